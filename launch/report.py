"""Paper-style table (EN %, FI %, Resp lang %; judge benchmarks' grades and win rates) and per-category figure from
eval output directories.

    python launch/report.py outputs/demo/eval_sft outputs/demo/eval_dpo --out report.md [--metric inst_level_strict_acc]

Writes report.md (Markdown table), report.csv beside it, and report_categories.png (when matplotlib is installed).
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.errors import SisuError  # noqa: E402
from data.files import atomic_write_text  # noqa: E402
from eval.report import (  # noqa: E402
    METRICS,
    category_accuracies,
    load_run,
    plot_categories,
    run_names,
    table_rows,
    to_csv,
    to_markdown,
)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "runs", nargs="+", help="eval output directories (each holds <benchmark>/scores.json)"
    )
    parser.add_argument("--out", default="report.md", help="Markdown output path (CSV and PNG beside it)")
    parser.add_argument("--metric", default="inst_level_strict_acc", choices=METRICS)
    parser.add_argument(
        "--names", nargs="*", help="row names (default: the part of each path that differs from the others)"
    )
    args = parser.parse_args(argv)
    if args.names and len(args.names) != len(args.runs):
        print("error: --names needs one name per run directory", file=sys.stderr)
        return 2
    if args.names and len(set(args.names)) != len(args.names):
        print(f"error: --names must be distinct, got {args.names}", file=sys.stderr)
        return 2
    try:
        names = args.names or run_names(args.runs)
        runs = [load_run(path, name) for path, name in zip(args.runs, names)]
        rows = table_rows(runs, metric=args.metric)
    except SisuError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    out = Path(args.out)
    title = f"IFEval, {args.metric.replace('_', ' ')} (%)"
    if any("grade" in column for column in rows[0]):
        title += "; judge benchmarks: mean grade (1-10) [95% interval], response language, win rate (ties half)"
    markdown = f"{title}\n\n" + to_markdown(rows)
    atomic_write_text(out, markdown)
    atomic_write_text(out.with_suffix(".csv"), to_csv(rows))
    series = {}
    for run in runs:
        for bench in ("ifeval_en", "ifeval_fi"):
            values = category_accuracies(run, bench)
            if values:
                series[f"{run.name} {bench.removeprefix('ifeval_').upper()}"] = values
    chart = plot_categories(series, out.with_name(out.stem + "_categories.png"), title="IFEval by category")
    print(markdown)
    print(f"wrote {out}, {out.with_suffix('.csv')}" + (f", {chart}" if chart else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
