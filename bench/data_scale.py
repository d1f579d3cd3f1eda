"""Data at scale: memory per rank and time to the first step of the real launch/sft.py, cold and warm cache.

    .venv/bin/python bench/data_scale.py --sizes 5000 50000 200000      # ~35 min on 2 idle cores
    .venv/bin/python bench/data_scale.py --sizes 5000 --nproc 2          # a quick check

For each N: N synthetic chats (bench/synthetic.py and bench/harness.py's long-tailed generator: median ~250, p90 ~800 tokens) in one
JSON lines file, then three runs of 2 optimizer steps (bench/recipes/data_scale.yaml: SmolLM2's tokenizer and
chat template, a tiny random Llama, max_seq_len 2048):
- `cold_1`: one process, empty cache (the baseline of the tokenization speed-up);
- `cold`: --nproc ranks (torchrun), empty cache;
- `warm`: --nproc ranks again, on the cache `cold` wrote.
Every 0.1 s the bench reads /proc of each rank: resident set (VmRSS, and VmHWM at the end), anonymous memory
(RssAnon: the process's own memory, as opposed to the mapped files the page cache shares between ranks), and
the node's MemAvailable. It notes when rank 0's output says the data is ready and when the first step's metrics
line appears. One JSON line per N goes to stdout and bench/results.jsonl; a markdown table to stderr.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness, synthetic  # noqa: E402

RECIPE = harness.BENCH / "recipes" / "data_scale.yaml"
DATA_START = "chat template:"  # rank 0 logs this line right before the data is loaded
DATA_READY = "data: source"  # ... and this one right after
TOKENIZED = re.compile(r"tokenizing: (\d+) records in \S+ \((\d+) records/s\)")


def _status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile of a process, in bytes ({} when it is gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        return {}
    return out


def _rank_of(pid: int) -> int | None:
    """The RANK a torchrun worker (or the single process) runs as; None for other processes."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"launch/sft.py" not in cmdline or b"torch.distributed.run" in cmdline:
            return None
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for entry in environ:
        if entry.startswith(b"RANK="):
            return int(entry[5:])
    return 0


def _descendants(pid: int) -> list[int]:
    children = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            children += [int(c) for c in text]
    except OSError:
        return []
    return children + [d for c in children for d in _descendants(c)]


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def run(cmd: list[str], *, out: Path, log: Path, timeout: float) -> dict[str, Any]:
    """Run one job, sampling its ranks; the measurements of the run."""
    out.mkdir(parents=True, exist_ok=True)
    metrics = out / "metrics.jsonl"
    available_before = _mem_available()
    start = time.monotonic()
    ranks: dict[int, dict[str, int]] = {}
    pids: dict[int, int] = {}
    marks: dict[str, float] = {}
    at_ready: dict[int, int] = {}
    seen = 0
    with log.open("w", encoding="utf-8") as handle:
        handle.write("$ " + " ".join(cmd) + "\n")
        handle.flush()
        proc = subprocess.Popen(
            cmd, cwd=harness.REPO, env=harness.child_env(), stdout=handle, stderr=subprocess.STDOUT
        )
        lowest_available = available_before
        while True:
            done = proc.poll() is not None
            now = time.monotonic() - start
            for pid in [proc.pid, *_descendants(proc.pid)]:
                rank = _rank_of(pid)
                if rank is None:
                    continue
                pids[rank] = pid
                status = _status(pid)
                peak = ranks.setdefault(rank, {})
                for key, value in status.items():
                    peak[key] = max(peak.get(key, 0), value)
            lowest_available = min(lowest_available, _mem_available())
            text = log.read_text(encoding="utf-8", errors="replace")
            if len(text) > seen:
                for marker in (DATA_START, DATA_READY):
                    if marker not in marks and marker in text:
                        marks[marker] = now
                        if marker == DATA_READY:  # the data is set up, no step has run yet
                            at_ready = {rank: _status(pid).get("RssAnon", 0) for rank, pid in pids.items()}
                seen = len(text)
            if "first_step" not in marks and metrics.is_file() and metrics.read_text().strip():
                marks["first_step"] = now
            if done:
                break
            if now > timeout:
                proc.kill()
                proc.wait()
                break
            time.sleep(0.1)
    text = log.read_text(encoding="utf-8", errors="replace")
    tokenized = TOKENIZED.search(text)
    data_seconds = None
    if DATA_START in marks and DATA_READY in marks:
        data_seconds = round(marks[DATA_READY] - marks[DATA_START], 2)
    return {
        "returncode": proc.returncode,
        "wall_seconds": round(time.monotonic() - start, 2),
        "seconds_to_first_step": round(marks["first_step"], 2) if "first_step" in marks else None,
        "data_seconds": data_seconds,
        "tokenize_records_per_second": int(tokenized.group(2)) if tokenized else None,
        "ranks": {
            str(rank): {
                "peak_rss_gb": round(peak.get("VmRSS", 0) / 1e9, 3),
                "peak_anon_gb": round(peak.get("RssAnon", 0) / 1e9, 3),
                "peak_file_gb": round(peak.get("RssFile", 0) / 1e9, 3),
                "anon_at_data_ready_gb": round(at_ready[rank] / 1e9, 3) if rank in at_ready else None,
            }
            for rank, peak in sorted(ranks.items())
        },
        "node_mem_available_before_gb": round(available_before / 1e9, 3),
        "node_mem_used_peak_gb": round((available_before - lowest_available) / 1e9, 3),
        "log": str(log),
    }


def sisu_command(args: argparse.Namespace, *, data: Path, cache: Path, out: Path, nproc: int) -> list[str]:
    launcher = [args.sisu_python]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    overrides = [
        f"data.sources.0.path={data}",
        f"data.cache_dir={cache}",
        f"output_dir={out}",
        f"data.num_workers={args.num_workers}",
        f"train.max_seq_len={args.max_seq_len}",
    ]
    if args.model == "demo":
        overrides += [f"model.path={harness.DEFAULT_MODEL}", "model.init_config=null", "model.tokenizer=null"]
    return [*launcher, "launch/sft.py", "--config", str(RECIPE), *overrides, *args.sisu_override]


def store_bytes(cache: Path) -> int:
    return sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())


def bench_size(num: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    data = workdir / f"chats-{num}.jsonl"
    if not data.is_file():
        print(f"[bench] writing {num} synthetic chats to {data}", file=sys.stderr)
        synthetic.write_jsonl(synthetic.iter_sft_records(num, seed=args.seed), data)
    runs: dict[str, Any] = {}
    plan = [("cold_1", 1, True), ("cold", args.nproc, True), ("warm", args.nproc, False)]
    for name, nproc, fresh in plan:
        cache = workdir / f"cache-{num}-{'1' if nproc == 1 else 'n'}"
        if fresh:
            shutil.rmtree(cache, ignore_errors=True)
        out = workdir / f"out-{num}-{name}"
        shutil.rmtree(out, ignore_errors=True)
        print(
            f"[bench] N={num} {name}: {nproc} rank(s), {'empty' if fresh else 'warm'} cache", file=sys.stderr
        )
        result = run(
            sisu_command(args, data=data, cache=cache, out=out, nproc=nproc),
            out=out,
            log=workdir / f"log-{num}-{name}.txt",
            timeout=args.timeout,
        )
        result["store_gb"] = round(store_bytes(cache) / 1e9, 3)
        runs[name] = result
        if result["returncode"] != 0:
            print(harness.tail(Path(result["log"])), file=sys.stderr)
            raise SystemExit(
                f"[bench] N={num} {name} failed (exit {result['returncode']}); log {result['log']}"
            )
        shutil.rmtree(out, ignore_errors=True)
    cold_1, cold = runs["cold_1"]["data_seconds"], runs["cold"]["data_seconds"]
    return {
        "records": num,
        "source_gb": round(data.stat().st_size / 1e9, 3),
        "runs": runs,
        "cold_data_seconds_ratio_nproc_vs_1": round(cold / cold_1, 3) if cold and cold_1 else None,
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| conversations | source | tokenized on disk | time to first step, warm / cold (1 rank cold) | data ready, "
        "warm / cold (1 rank) | cold data time, 2 ranks / 1 | tokenize records/s, 2 ranks / 1 | peak RssAnon per "
        "rank, warm / cold | RssAnon per rank at data ready, warm | peak RSS per rank, warm | node memory used, "
        "warm / cold |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        r = row["runs"]

        def ranks(run: str, key: str, r: dict = r) -> str:
            return "/".join(f"{v[key]:.2f}" for v in r[run]["ranks"].values())

        lines.append(
            f"| {row['records']:,} | {row['source_gb']:.2f} GB | {r['cold']['store_gb']:.2f} GB | "
            f"{r['warm']['seconds_to_first_step']} / {r['cold']['seconds_to_first_step']} s "
            f"({r['cold_1']['seconds_to_first_step']} s) | {r['warm']['data_seconds']} / {r['cold']['data_seconds']} s "
            f"({r['cold_1']['data_seconds']} s) | {row['cold_data_seconds_ratio_nproc_vs_1']} | "
            f"{r['cold']['tokenize_records_per_second']} / {r['cold_1']['tokenize_records_per_second']} | "
            f"{ranks('warm', 'peak_anon_gb')} / {ranks('cold', 'peak_anon_gb')} GB | "
            f"{ranks('warm', 'anon_at_data_ready_gb')} GB | {ranks('warm', 'peak_rss_gb')} GB | "
            f"{r['warm']['node_mem_used_peak_gb']:.2f} / {r['cold']['node_mem_used_peak_gb']:.2f} GB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000, 200000], help="conversations")
    parser.add_argument("--nproc", type=int, default=2, help="ranks of the cold and warm runs")
    parser.add_argument("--num-workers", type=int, default=1, help="data.num_workers (processes per rank)")
    parser.add_argument("--max-seq-len", type=int, default=2048)
    parser.add_argument("--model", choices=("tiny", "demo"), default="tiny",
                        help="tiny: random 2-layer Llama with SmolLM2's tokenizer (default); demo: SmolLM2-135M")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic chats")
    parser.add_argument("--sisu-override", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--sisu-python", default=str(harness.SISU_PYTHON))
    parser.add_argument(
        "--workdir", default=None, help="data, caches and logs (default: a temp dir, removed)"
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per run")
    parser.add_argument("--results", default=str(harness.RESULTS))
    parser.add_argument("--no-append", action="store_true", help="print the result lines only")
    args = parser.parse_args(argv)
    if not harness.DEFAULT_MODEL.is_dir():
        raise SystemExit(f"{harness.DEFAULT_MODEL} not found (python launch/convert_gguf.py makes it)")
    temporary = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="sisu-bench-data-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    head = {
        "bench": "data_scale",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": harness.command_line(),
        "git": harness.git_info(),
        "machine": harness.machine_info(),
        "versions": {
            "sisu": harness.python_versions(Path(args.sisu_python), ("torch", "transformers", "numpy"))
        },
        "settings": {
            "nproc": args.nproc,
            "num_workers": args.num_workers,
            "max_seq_len": args.max_seq_len,
            "model": args.model,
            "recipe": str(RECIPE.relative_to(harness.REPO)),
            "overrides": args.sisu_override,
        },  # fmt: skip
    }
    rows = []
    try:
        for num in args.sizes:
            row = {**head, **bench_size(num, args, workdir)}
            rows.append(row)
            harness.finish(row, args)
    finally:
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)
    print(table(rows), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
