"""Ten tiny training runs whose metrics must not change when the code change is not about compute.

    .venv/bin/python bench/bitwise_runs.py run /tmp/before        # in a checkout of the base commit
    .venv/bin/python bench/bitwise_runs.py run /tmp/after         # in the changed checkout
    .venv/bin/python bench/bitwise_runs.py compare /tmp/before /tmp/after

The runs cover SFT (1 process, packed, group_by_length with prompt masking and NEFTune, 2 processes, fraction and
max_records), DPO (live reference, precomputed and packed, 2 processes precomputed) and BLOOM/ALiBi (unpacked, and
packed on 2 processes). `compare` checks every key of every `metrics.jsonl` row but timings and memory, and exits 1
on any difference (printing the first one). About a minute on 2 idle cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness  # noqa: E402

REPO = harness.REPO
SFT, DPO, BLOOM = (
    "recipes/test/tiny_sft.yaml",
    "recipes/test/tiny_dpo.yaml",
    "recipes/test/tiny_bloom_sft.yaml",
)
RUNS: dict[str, tuple[int, str, str, list[str]]] = {  # name: (processes, job, recipe, overrides)
    "sft1": (1, "launch/sft.py", SFT, []),
    "sft_packed": (1, "launch/sft.py", SFT, ["data.packing=true"]),
    "sft_group": (1, "launch/sft.py", SFT, ["data.group_by_length=true", "data.prompt_masking=true",
                                            "train.neftune_alpha=5"]),
    "sft2": (2, "launch/sft.py", SFT, []),
    "sft_frac": (1, "launch/sft.py", SFT, ["data.sources.1.fraction=0.5", "data.sources.0.max_records=40",
                                           "data.group_by_length=true"]),
    "dpo_live": (1, "launch/dpo.py", DPO, []),
    "dpo_pre_packed": (1, "launch/dpo.py", DPO, ["reference.mode=precompute", "data.packing=true"]),
    "dpo2": (2, "launch/dpo.py", DPO, ["reference.mode=precompute"]),
    "bloom": (1, "launch/sft.py", BLOOM, []),
    "bloom_packed": (2, "launch/sft.py", BLOOM, ["data.packing=true"]),
}  # fmt: skip
NOT_COMPARED = {"tokens_per_second", "pairs_per_second", "step_seconds", "elapsed_seconds", "peak_memory_gb",
                "rss_gb", "mfu"}  # fmt: skip


def run_all(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    env = harness.child_env()
    for name, (processes, job, recipe, overrides) in RUNS.items():
        launcher = [sys.executable]
        if processes > 1:
            launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
        command = [*launcher, job, "--config", recipe, f"output_dir={out / name}", f"data.cache_dir={out / 'cache'}",
                   *overrides]  # fmt: skip
        print(f"== {name}", flush=True)
        with (out / f"{name}.log").open("w") as log:
            proc = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            sys.exit(f"{name} failed (exit {proc.returncode}); see {out / f'{name}.log'}")


def _rows(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{key: value for key, value in row.items() if key not in NOT_COMPARED} for row in rows]


def compare(before: Path, after: Path) -> bool:
    same_everywhere = True
    for name in RUNS:
        a, b = before / name / "metrics.jsonl", after / name / "metrics.jsonl"
        if not a.is_file() or not b.is_file():
            print(f"MISSING {name}")
            same_everywhere = False
            continue
        rows_a, rows_b = _rows(a), _rows(b)
        same = rows_a == rows_b
        same_everywhere &= same
        print(f"{'identical' if same else 'DIFFERENT'} {name}: {len(rows_a)} / {len(rows_b)} steps")
        for x, y in zip(rows_a, rows_b):
            if x != y:
                print(
                    "  first difference:",
                    {k: (x.get(k), y.get(k)) for k in sorted(set(x) | set(y)) if x.get(k) != y.get(k)},
                )
                break
    print("ALL IDENTICAL" if same_everywhere else "DIFFERENCES")
    return same_everywhere


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="the ten runs into OUT").add_argument("out", type=Path)
    compare_parser = commands.add_parser("compare", help="compare two folders of runs")
    compare_parser.add_argument("before", type=Path)
    compare_parser.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.command == "run":
        run_all(args.out)
    elif not compare(args.before, args.after):
        sys.exit(1)


if __name__ == "__main__":
    main()
