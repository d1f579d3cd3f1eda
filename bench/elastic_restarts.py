"""Elastic restarts: a worker killed mid-run, torchrun restarts the group, the job resumes and matches.

    .venv/bin/python bench/elastic_restarts.py --repeats 15                 # static and c10d rendezvous
    .venv/bin/python bench/elastic_restarts.py --repeats 3 --rendezvous static

Each repeat runs the tiny SFT recipe on 2 CPU ranks for 40 steps under `torchrun --max-restarts 1`, checkpointing
every 5 steps; rank 0 kills itself with SIGKILL after step 12 (SISU_DEBUG_SIGKILL_AFTER_STEP, first attempt
only), so the agent restarts both workers and they resume from step 10. A repeat passes when the job exits 0 and
its `metrics.jsonl` equals an uninterrupted run's in every loss, gradient norm and learning rate. One JSON line per
rendezvous at the end: passed / repeats and the seconds each took.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness  # noqa: E402

REPO = harness.REPO
RECIPE = "recipes/test/tiny_sft.yaml"
STEPS, EVERY, KILL_AFTER = 40, 5, 12
COMPARED = ("step", "loss", "grad_norm", "lr", "tokens", "epoch")
RENDEZVOUS = ("static", "c10d")
RESTARTED = "torchrun restarted the workers (restart 1)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(rendezvous: str, *, max_restarts: int) -> list[str]:
    """torchrun for 2 local workers with `rendezvous` (static: fixed master address; c10d: a rendezvous store)."""
    port = free_port()
    base = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2"]
    base += ["--max-restarts", str(max_restarts), "--monitor-interval", "0.5"]
    if rendezvous == "static":
        return [*base, "--rdzv-backend", "static", "--master-addr", "127.0.0.1", "--master-port", str(port),
                "--node-rank", "0"]  # fmt: skip
    if rendezvous == "c10d":
        return [
            *base,
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            f"127.0.0.1:{port}",
            "--rdzv-id",
            f"sisu{port}",
        ]
    raise ValueError(f"unknown rendezvous {rendezvous!r}")


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The benchmarks' child environment, without the variables of a torchrun this script may run under."""
    drop = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    env = {
        k: v for k, v in harness.child_env().items() if k not in drop and not k.startswith("TORCHELASTIC_")
    }
    return {**env, "OMP_NUM_THREADS": "1", **(extra or {})}


def run(
    out: Path, cache: Path, *, rendezvous: str, kill: bool, timeout: float = 600
) -> subprocess.CompletedProcess:
    """The 40-step tiny SFT job on 2 workers; with `kill`, rank 0 dies after step 12 of the first attempt."""
    overrides = [f"output_dir={out}", f"data.cache_dir={cache}", f"train.max_steps={STEPS}", "train.epochs=100",
                 f"checkpoint.every_steps={EVERY}", "checkpoint.keep=2", "distributed.timeout_minutes=2"]  # fmt: skip
    extra = {"SISU_DEBUG_SIGKILL_AFTER_STEP": str(KILL_AFTER)} if kill else {}
    command = [*torchrun(rendezvous, max_restarts=1), "launch/sft.py", "--config", RECIPE, *overrides]
    return subprocess.run(
        command, cwd=REPO, env=environment(extra), capture_output=True, text=True, timeout=timeout
    )


def losses(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [{key: row.get(key) for key in COMPARED} for row in rows if "loss" in row]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--rendezvous", choices=RENDEZVOUS, nargs="+", default=list(RENDEZVOUS))
    parser.add_argument(
        "--timeout", type=float, default=240, help="seconds a repeat may take before it counts as hung"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sisu-elastic-"))
    print(f"working in {work} (the logs of failed repeats stay there)", file=sys.stderr)
    cache = work / "cache"
    try:
        reference = run(work / "reference", cache, rendezvous="static", kill=False, timeout=args.timeout)
        if reference.returncode != 0:
            sys.exit("the uninterrupted run failed:\n" + reference.stderr[-3000:])
        expected = losses(work / "reference")
        assert len(expected) == STEPS, len(expected)
        for rendezvous in args.rendezvous:
            passed, seconds, failures = 0, [], []
            for repeat in range(args.repeats):
                out = work / f"{rendezvous}-{repeat}"
                start = time.perf_counter()
                try:
                    proc = run(out, cache, rendezvous=rendezvous, kill=True, timeout=args.timeout)
                    ok = (
                        proc.returncode == 0
                        and losses(out) == expected
                        and RESTARTED in proc.stdout + proc.stderr
                    )
                    why = "" if ok else f"exit {proc.returncode}, log {out.with_suffix('.log')}"
                    if not ok:  # kept for a look: the end of both workers' output
                        out.with_suffix(".log").write_text(proc.stdout + proc.stderr)
                except subprocess.TimeoutExpired:
                    ok, why = False, f"hung past {args.timeout:.0f} s"
                seconds.append(round(time.perf_counter() - start, 1))
                passed += ok
                if not ok:
                    failures.append(f"repeat {repeat}: {why}")
                print(f"{rendezvous} repeat {repeat + 1}/{args.repeats}: {'ok' if ok else why} "
                      f"({seconds[-1]} s)", file=sys.stderr, flush=True)  # fmt: skip
                shutil.rmtree(out, ignore_errors=True)
            line = {"bench": "elastic_restarts", "rendezvous": rendezvous, "passed": passed,
                    "repeats": args.repeats, "seconds": seconds, "failures": failures}  # fmt: skip
            print(json.dumps(line), flush=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(work / "reference", ignore_errors=True)


if __name__ == "__main__":
    main()
