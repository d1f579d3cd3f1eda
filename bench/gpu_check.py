"""The prepared GPU check: SFT, DPO and eval of ~1B random-init BLOOM (ALiBi) and Llama models on one GPU, then
the same jobs on two ranks sharing that GPU under a process group that serves CUDA tensors only. One JSON line.

    python3 bench/gpu_check.py                   # one GPU, bf16, packing: about 5 minutes on an H200
    python3 bench/gpu_check.py --smoke           # CPU, tiny models, gloo: checks the plumbing (a test runs it)

What it shows, per architecture: SFT packed in bf16 (tokens/s, MFU, peak memory, losses), DPO from the SFT export
(packed, live reference: the first loss must be ln 2), eval of the export with its own chat template (responses
and scores written). Then on two ranks (torchrun, `distributed.backend=cuda:gloo`: gloo serving CUDA tensors
only, both ranks on the one GPU; NCCL refuses two ranks on one device): BLOOM SFT packed (its losses against the
one-rank run's), Llama DPO with the reference precomputed (the all-reduce of the log-probs), and eval sharded with
FSDP2 (lockstep generation, object collectives). Any CPU tensor handed to a collective fails these runs, as it
fails on NCCL/RCCL.

Every job is the real entry point (launch/sft.py, launch/dpo.py, launch/eval.py) in a subprocess of this Python
(`sys.executable`), on synthetic long-tailed chats (bench/synthetic.py and bench/harness.py) and sisu's own IFEval prompts. Needs torch,
transformers, safetensors, pyyaml, sentencepiece, tokenizers and langdetect; nothing from a hub. The line is
printed and written to --out/gpu_check.json; --out keeps the logs and metrics of every job. Exit status 1 when a
job failed or a check did not hold (the line says which).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness, synthetic  # noqa: E402
from bench.gpu_mfu import SMOKE, TINYLLAMA_1B  # noqa: E402

REPO = harness.REPO
# ~1B parameters each with the tiny byte-level tokenizers (the vocabulary adds almost nothing)
BLOOM_1B = {"model_type": "bloom", "hidden_size": 2048, "n_head": 16, "n_layer": 20}
LLAMA_1B = TINYLLAMA_1B  # bench/gpu_mfu.py's model
TINY_BLOOM = {"model_type": "bloom", "hidden_size": 64, "n_head": 4, "n_layer": 2}
TINY_LLAMA = {**SMOKE, "tie_word_embeddings": False}  # bench/gpu_mfu.py's smoke model, untied
# BLOOM gets the base tokenizer without a chat template (sisu adds the ChatML markers, as for Poro-34B); Llama the
# tokenizer that has ChatML.
TOKENIZERS = {"bloom": "recipes/test/tokenizer_base", "llama": "recipes/test/tokenizer"}
BENCHMARKS = [
    {"name": "ifeval_en", "path": "eval/ifeval/data/en_demo_prompts.jsonl", "language": "en"},
    {"name": "ifeval_fi", "path": "eval/ifeval/data/fi_test_prompts.jsonl", "language": "fi"},
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny models, gloo: checks the plumbing")
    parser.add_argument("--out", default="outputs/gpu_check", help="logs, metrics and gpu_check.json")
    parser.add_argument("--sft-steps", type=int, default=8)
    parser.add_argument("--dpo-steps", type=int, default=4)
    parser.add_argument("--max-seq-len", type=int, default=2048)
    parser.add_argument("--timeout", type=float, default=420, help="seconds per job")
    return parser.parse_args(argv)


class Check:
    """Runs the jobs, keeps their numbers and what failed."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.smoke = args.smoke
        self.failures: list[str] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        chats, pairs = (64, 32) if self.smoke else (4096, 512)
        self.sft_data = synthetic.write_jsonl(synthetic.make_sft_records(chats, seed=0), self.out / "chats.jsonl")
        self.pair_data = synthetic.write_jsonl(
            synthetic.make_preference_records(pairs, seed=0, max_prompt_tokens=self.max_seq_len // 4),
            self.out / "pairs.jsonl",
        )

    @property
    def max_seq_len(self) -> int:
        return 256 if self.smoke else self.args.max_seq_len

    def model(self, family: str) -> dict[str, Any]:
        spec = (
            (TINY_BLOOM if family == "bloom" else TINY_LLAMA)
            if self.smoke
            else (BLOOM_1B if family == "bloom" else LLAMA_1B)
        )
        return {"init_config": {**spec, "vocab_size": 258}, "tokenizer": TOKENIZERS[family]}

    def recipe(self, name: str, body: dict[str, Any]) -> Path:
        path = self.out / "recipes" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
        return path

    def run(self, name: str, script: str, recipe: Path, *overrides: str, nproc: int = 1) -> Path | None:
        """One job; returns its output directory, or None (and a failure) when it did not finish."""
        launcher = [sys.executable]
        if nproc > 1:
            launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
        out = self.out / name
        cmd = [*launcher, script, "--config", str(recipe), f"output_dir={out}", *overrides]
        print(f"[gpu_check] {name}: {' '.join(cmd[len(launcher) :])}", file=sys.stderr, flush=True)
        child = harness.run_child(cmd, log=self.out / f"{name}.log", timeout=self.args.timeout)
        self.jobs[name] = {"seconds": round(child.wall_seconds, 1)}
        if child.returncode != 0:
            self.failures.append(f"{name}: exit {child.returncode}: {harness.tail(child.log, 3)}")
            return None
        return out

    def train_numbers(self, name: str, out: Path | None) -> list[dict[str, Any]]:
        if out is None:
            return []
        steps = harness.read_jsonl(out / "metrics.jsonl")
        measured = steps[2:] or steps[-1:]
        numbers = {
            "tokens_per_second": round(statistics.median(s["tokens_per_second"] for s in measured), 1),
            "peak_memory_gb": round(max(s["peak_memory_gb"] for s in steps), 2),
            "losses": [round(s["loss"], 5) for s in steps],
            "padding_efficiency": round(statistics.median(s["padding_efficiency"] for s in measured), 3),
        }
        mfus = [s["mfu"] for s in measured if "mfu" in s]
        if mfus:
            numbers["mfu"] = round(statistics.median(mfus), 4)
        self.jobs[name].update(numbers)
        return steps

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            self.failures.append(message)

    # -- the jobs ----------------------------------------------------------------------------------------------

    def sft(
        self, family: str, *, nproc: int = 1, name: str | None = None, backend: str = "auto"
    ) -> Path | None:
        name = name or f"{family}_sft"
        recipe = self.recipe(
            name,
            {
                "seed": 0,
                "model": self.model(family),
                "data": {
                    "sources": [{"path": str(self.sft_data), "format": "messages", "lang": "en"}],
                    "template": "chatml",
                    "packing": True,
                    "cache_dir": str(self.out / "cache"),
                },
                "train": {
                    "max_steps": 2 if self.smoke else self.args.sft_steps,
                    "global_batch_size": 8 if self.smoke else 128,
                    "micro_batch_size": 2 if self.smoke else 4,
                    "max_seq_len": self.max_seq_len,
                },
                "optim": {"lr": 1e-4, "warmup_ratio": 0.0, "scheduler": "constant"},
                "checkpoint": {"every_steps": 1000000, "keep": 1},
                "logging": {"tensorboard": False},
                "distributed": {"backend": backend},
            },
        )
        out = self.run(name, "launch/sft.py", recipe, nproc=nproc)
        self.train_numbers(name, out)
        return out

    def dpo(
        self, family: str, policy: Path | None, *, mode: str, nproc: int = 1, backend: str = "auto"
    ) -> None:
        name = f"{family}_dpo_{mode}" + (f"_{nproc}ranks" if nproc > 1 else "")
        if policy is None:
            self.failures.append(f"{name}: not run (no SFT export)")
            return
        recipe = self.recipe(
            name,
            {
                "seed": 0,
                "model": {"path": str(policy / "final")},
                "reference": {"mode": mode},
                "dpo": {"beta": 0.1},
                "data": {
                    "sources": [{"path": str(self.pair_data), "format": "preference", "lang": "en"}],
                    "packing": True,
                    "max_prompt_length": self.max_seq_len // 4,
                    "cache_dir": str(self.out / "cache"),
                },
                "train": {
                    "max_steps": 2 if self.smoke else self.args.dpo_steps,
                    "global_batch_size": 8 if self.smoke else 32,
                    "micro_batch_size": 2,
                    "max_seq_len": self.max_seq_len // 2,
                },
                "optim": {"lr": 5e-6, "warmup_ratio": 0.0},
                "checkpoint": {"every_steps": 1000000, "keep": 1, "save_final": False},
                "logging": {"tensorboard": False},
                "distributed": {"backend": backend},
            },
        )
        steps = self.train_numbers(name, self.run(name, "launch/dpo.py", recipe, nproc=nproc))
        if steps:
            first = steps[0]["loss"]
            self.jobs[name]["first_loss_minus_ln2"] = round(first - math.log(2), 7)
            self.expect(abs(first - math.log(2)) < 1e-3, f"{name}: first DPO loss {first}, not ln 2")

    def eval(self, family: str, policy: Path | None, *, nproc: int = 1, backend: str = "auto") -> None:
        name = f"{family}_eval" + (f"_{nproc}ranks" if nproc > 1 else "")
        if policy is None:
            self.failures.append(f"{name}: not run (no SFT export)")
            return
        limit = 2 if self.smoke else 12
        recipe = self.recipe(
            name,
            {
                "seed": 0,
                "model": {"path": str(policy / "final")},
                "benchmarks": [{**bench, "limit": limit} for bench in BENCHMARKS],
                "generation": {"max_new_tokens": 8 if self.smoke else 128, "batch_size": 4},
                "sharding": "fsdp" if nproc > 1 else "replicate",
                "distributed": {"backend": backend},
            },
        )
        out = self.run(name, "launch/eval.py", recipe, nproc=nproc)
        if out is None:
            return
        for bench in BENCHMARKS:
            rows = (out / bench["name"] / "responses.jsonl").read_text(encoding="utf-8").splitlines()
            self.expect(len(rows) == limit, f"{name}: {len(rows)} responses for {bench['name']}, not {limit}")
            self.expect(
                (out / bench["name"] / "scores.json").is_file(), f"{name}: no scores for {bench['name']}"
            )
        self.jobs[name]["responses"] = limit * len(BENCHMARKS)


def device_info() -> dict[str, Any]:
    import torch

    info = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "hip": getattr(torch.version, "hip", None),
    }
    if torch.cuda.is_available():
        info["name"] = torch.cuda.get_device_name(0)
        info["memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 1e9, 1)
    else:
        info["name"] = "cpu"
    return info


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    device = device_info()
    if device["name"] == "cpu" and not args.smoke:
        raise SystemExit("bench/gpu_check.py: no GPU is visible; use --smoke for the CPU plumbing check")
    check = Check(args)
    # two ranks on one GPU: gloo serving CUDA tensors only; on the CPU smoke, plain gloo
    shared = "gloo" if args.smoke else "cuda:gloo"
    exports = {family: check.sft(family) for family in ("bloom", "llama")}
    for family, export in exports.items():
        check.dpo(family, export, mode="live")
        check.eval(family, export)
    two = check.sft("bloom", nproc=2, name="bloom_sft_2ranks", backend=shared)
    if two is not None and exports["bloom"] is not None:
        one_losses = check.jobs["bloom_sft"]["losses"]
        two_losses = check.jobs["bloom_sft_2ranks"]["losses"]
        diff = max(abs(a - b) / abs(a) for a, b in zip(one_losses, two_losses))
        check.jobs["bloom_sft_2ranks"]["max_rel_loss_diff_vs_1_rank"] = round(diff, 6)
        tolerance = 1e-5 if args.smoke else 2e-2  # bf16 sums in another order
        check.expect(diff <= tolerance, f"bloom_sft_2ranks: losses differ from 1 rank by {diff:.2e}")
    check.dpo("llama", exports["llama"], mode="precompute", nproc=2, backend=shared)
    check.eval("bloom", exports["bloom"], nproc=2, backend=shared)
    result = {
        "bench": "gpu_check",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": harness.command_line(),
        "git": harness.git_info(),
        "device": device,
        "smoke": args.smoke,
        "ok": not check.failures,
        "failures": check.failures,
        "seconds": round(time.perf_counter() - start, 1),
        "jobs": check.jobs,
    }
    line = json.dumps(result)
    (check.out / "gpu_check.json").write_text(line + "\n", encoding="utf-8")
    print(line, flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
