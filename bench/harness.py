"""How the benchmarks run and report (bench/synthetic.py makes their data):

- environment: machine, git commit, package versions of both interpreters;
- running: one child process per run, with its wall time and its peak RSS measured from outside (wait4);
- per-step metrics of either system -> one run summary (steps after the warm-up) -> medians and ratios;
- the result: one JSON line on stdout, appended to bench/results.jsonl.

sisu and TRL never share a process: sisu runs with the main interpreter (.venv/bin/python), TRL with
bench/.venv-trl/bin/python on bench/trl_runner.py (made by bench/setup_trl.sh).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
DEFAULT_MODEL = REPO / ".cache" / "models" / "smollm2-135m-instruct"
SISU_PYTHON = REPO / ".venv" / "bin" / "python"
TRL_PYTHON = BENCH / ".venv-trl" / "bin" / "python"
TRL_RUNNER = BENCH / "trl_runner.py"
RESULTS = BENCH / "results.jsonl"

# --------------------------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"nproc": os.cpu_count(), "cpu_model": cpu, "platform": platform.platform()}
    try:
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["mem_total_gb"] = round(int(line.split()[1]) * 1024 / 1e9, 1)
    except (OSError, ValueError):
        pass
    return info


def git_info() -> dict[str, Any]:
    """Read-only: the commit and whether the work tree differs from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        return {
            "commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        }
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def python_versions(python: Path, modules: Sequence[str]) -> dict[str, str | None]:
    """Versions of `modules` as seen by another interpreter (importlib.metadata, nothing imported)."""
    code = (
        "import json, platform, sys\n"
        "from importlib import metadata\n"
        "out = {'python': platform.python_version()}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        out[name] = metadata.version(name)\n"
        "    except metadata.PackageNotFoundError:\n"
        "        out[name] = None\n"
        "print(json.dumps(out))\n"
    )
    try:
        done = subprocess.run(
            [str(python), "-c", code, *modules], capture_output=True, text=True, check=True, timeout=60
        )
        return json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return {"python": None}


def child_env() -> dict[str, str]:
    """The same environment for both systems: offline, no tokenizer threads, unbuffered output."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    env.pop("PYTHONPATH", None)
    return env


# --------------------------------------------------------------------------------------------------------------
# Running one system
# --------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ChildResult:
    returncode: int
    wall_seconds: float
    max_rss_bytes: int  # the child's peak resident set size over its whole life (wait4's ru_maxrss)
    log: Path


def run_child(cmd: Sequence[str], *, log: Path, timeout: float, cwd: Path = REPO) -> ChildResult:
    """Run `cmd` with its output in `log`; reap it with wait4 so that its own peak RSS is known."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as out:
        out.write("$ " + shlex.join(cmd) + "\n")
        out.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, env=child_env(), stdout=out, stderr=subprocess.STDOUT)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                out.write(f"\n[bench] killed after {timeout:.0f} s\n")
                break
            time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
    return ChildResult(
        returncode=proc.returncode,
        wall_seconds=time.perf_counter() - start,
        max_rss_bytes=usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024),
        log=log,
    )


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def sisu_steps(metrics_path: Path) -> list[dict[str, Any]]:
    """sisu's metrics.jsonl -> the bench's per-step shape (see trl_runner.py for the TRL side)."""
    steps = []
    for row in read_jsonl(metrics_path):
        seconds = row["step_seconds"]
        step = {
            "step": row["step"],
            "loss": row["loss"],
            "step_seconds": seconds,
            "real_tokens": round(row["tokens_per_second"] * seconds),
            "peak_rss_bytes": round(row["peak_memory_gb"] * 1e9),
        }
        if "num_pairs" in row:
            step["num_pairs"] = row["num_pairs"]
        steps.append(step)
    return steps


def summarize_run(
    steps: Sequence[dict[str, Any]], *, warmup: int, child: ChildResult, expected_steps: int
) -> dict[str, Any]:
    """One run: throughput over the steps after `warmup` (sum of tokens / sum of seconds), losses, memory."""
    if child.returncode != 0 or len(steps) < expected_steps:
        raise RuntimeError(
            f"run failed (exit {child.returncode}, {len(steps)}/{expected_steps} steps); log {child.log}:\n"
            + tail(child.log)
        )
    measured = steps[warmup:] or steps[-1:]
    seconds = sum(s["step_seconds"] for s in measured)
    out: dict[str, Any] = {
        "tokens_per_second": round(sum(s["real_tokens"] for s in measured) / seconds, 1),
        "step_seconds_mean": round(seconds / len(measured), 3),
        "step_seconds": [round(s["step_seconds"], 2) for s in steps],
        "measured_steps": len(measured),
        "real_tokens_measured": sum(s["real_tokens"] for s in measured),
        "first_loss": round(steps[0]["loss"], 5),
        "final_loss": round(steps[-1]["loss"], 5),
        # ru_maxrss of the training process at the end of its last step (the same definition on both sides;
        # excludes what a system does after training, such as sisu's final checkpoint)
        "peak_rss_gb": round(steps[-1]["peak_rss_bytes"] / 1e9, 3),
        # the child's peak over its whole life, measured from outside (wait4)
        "process_peak_rss_gb": round(child.max_rss_bytes / 1e9, 3),
        "wall_seconds": round(child.wall_seconds, 1),
    }
    if all("num_pairs" in s for s in measured):
        out["pairs_per_second"] = round(sum(s["num_pairs"] for s in measured) / seconds, 4)
    return out


def median_of(runs: Sequence[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(values), 4) if values else None


def aggregate(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the repeats of one system, plus the runs themselves."""
    keys = (
        "tokens_per_second",
        "pairs_per_second",
        "step_seconds_mean",
        "peak_rss_gb",
        "process_peak_rss_gb",
        "first_loss",
        "final_loss",
        "wall_seconds",
    )
    out = {key: median_of(runs, key) for key in keys if any(key in r for r in runs)}
    out["runs"] = list(runs)
    return out


def compare_tokens(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Real tokens of the measured steps in the first run of each system, and their relative difference
    (0 when both tokenize the same examples the same way and train them in the same order)."""
    (name_a, a), (name_b, b) = runs.items()
    x, y = a["runs"][0]["real_tokens_measured"], b["runs"][0]["real_tokens_measured"]
    return {name_a: x, name_b: y, "relative_difference": round((x - y) / y, 4) if y else None}


def paired_ratios(a: dict[str, Any], b: dict[str, Any], key: str) -> dict[str, Any]:
    """Ratios a/b of the runs of the same repeat (run back to back, so they share most of the machine's drift),
    and their median: a check on the ratio of medians when the machine's speed changed between repeats."""
    values = [
        round(x[key] / y[key], 3)
        for x, y in zip(a["runs"], b["runs"])
        if x.get(key) is not None and y.get(key)
    ]
    return {"per_repeat": values, "median": round(statistics.median(values), 3) if values else None}


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def alternate(
    systems: Sequence[str], repeats: int, run_one: Callable[[str, int], dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """A B A B ...: every repeat runs each system once, in the given order (the machine's speed drifts)."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
    for repeat in range(1, repeats + 1):
        for name in systems:
            print(f"[bench] repeat {repeat}/{repeats}: {name} ...", file=sys.stderr, flush=True)
            load_before = _load_average()
            result = run_one(name, repeat)
            # other work on the machine skews a run: its 1-minute load average before and after
            result["load_average_1m"] = [load_before, _load_average()]
            print(
                f"[bench]   {name}: {result['tokens_per_second']} real tokens/s"
                + (f", {result['pairs_per_second']} pairs/s" if "pairs_per_second" in result else "")
                + f", step {result['step_seconds_mean']} s, peak RSS {result['peak_rss_gb']} GB"
                f" (process {result['process_peak_rss_gb']} GB), loss {result['first_loss']} -> "
                f"{result['final_loss']}, wall {result['wall_seconds']} s",
                file=sys.stderr,
                flush=True,
            )
            runs[name].append(result)
    return runs


# --------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------


def add_common_args(
    parser: argparse.ArgumentParser, *, steps: int, global_batch: int, micro_batch: int
) -> None:
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="HF model directory (both systems)")
    parser.add_argument("--steps", type=int, default=steps, help="optimizer steps per run")
    parser.add_argument(
        "--warmup-steps", type=int, default=1, help="first steps left out of the throughput (warm-up)"
    )
    parser.add_argument("--repeats", type=int, default=2, help="A B rounds; medians are over these")
    parser.add_argument(
        "--global-batch", type=int, default=global_batch, help="samples (pairs) per optimizer step"
    )
    parser.add_argument("--micro-batch", type=int, default=micro_batch, help="samples (pairs) per forward")
    parser.add_argument("--max-seq-len", type=int, default=512)
    parser.add_argument("--lr", type=float, default=None, help="learning rate (constant, no warmup)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and of both trainers")
    parser.add_argument(
        "--sisu-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra sisu config override, e.g. data.group_by_length=true (repeatable; applied last)",
    )
    parser.add_argument(
        "--trl-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra TRL config field, e.g. optim=adamw_torch (repeatable; value parsed as JSON, else string)",
    )
    parser.add_argument("--skip-trl", action="store_true", help="run sisu only (no TRL environment needed)")
    parser.add_argument("--sisu-python", default=str(SISU_PYTHON))
    parser.add_argument("--trl-python", default=str(TRL_PYTHON))
    parser.add_argument(
        "--workdir", default=None, help="keep data, logs and outputs here (default: a temp dir)"
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per run")
    parser.add_argument("--results", default=str(RESULTS), help="JSONL file the result line is appended to")
    parser.add_argument("--no-append", action="store_true", help="print the result line only")


def check_args(args: argparse.Namespace) -> None:
    if args.global_batch % args.micro_batch:
        raise SystemExit(
            f"--global-batch {args.global_batch} is not a multiple of --micro-batch {args.micro_batch}"
        )
    if args.steps <= args.warmup_steps:
        raise SystemExit(f"--steps {args.steps} must exceed --warmup-steps {args.warmup_steps}")
    if not args.skip_trl and not Path(args.trl_python).is_file():
        raise SystemExit(
            f"{args.trl_python} not found: run `bash bench/setup_trl.sh` first, or pass --skip-trl"
        )
    if not Path(args.model).is_dir():
        raise SystemExit(f"model directory {args.model} not found (python launch/convert_gguf.py makes it)")


def command_line() -> str:
    """How this bench was started, as a command to paste (relative to the repository root when possible)."""
    script = Path(sys.argv[0]).resolve()
    try:
        script_text = str(script.relative_to(REPO))
    except ValueError:
        script_text = str(script)
    return shlex.join([".venv/bin/python", script_text, *sys.argv[1:]])


def header(args: argparse.Namespace, bench: str) -> dict[str, Any]:
    versions = {"sisu": python_versions(Path(args.sisu_python), ("torch", "transformers", "datasets"))}
    if not args.skip_trl:
        versions["trl"] = python_versions(
            Path(args.trl_python), ("torch", "transformers", "datasets", "accelerate", "trl")
        )
    return {
        "bench": bench,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "git": git_info(),
        "machine": machine_info(),
        "versions": versions,
    }


def finish(result: dict[str, Any], args: argparse.Namespace) -> None:
    line = json.dumps(result)
    print(line, flush=True)
    if not args.no_append:
        path = Path(args.results)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        print(f"[bench] appended to {path}", file=sys.stderr)
