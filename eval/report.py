"""Paper-style tables from evaluation run directories (Table 1/2: EN %, FI %, Resp lang %; judge benchmarks' grades
and win rates beside them). No torch."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from data.errors import ConfigError, DataError

METRICS = (
    "inst_level_strict_acc",
    "inst_level_loose_acc",
    "prompt_level_strict_acc",
    "prompt_level_loose_acc",
)


@dataclass
class RunScores:
    name: str
    path: Path
    benchmarks: dict[str, dict] = field(default_factory=dict)  # benchmark name -> scores.json content


def load_run(path: str | Path, name: str | None = None) -> RunScores:
    """Every `*/scores.json` under an eval output directory; ValueError when there is none."""
    path = Path(path)
    found = sorted(path.glob("*/scores.json"))
    if not found:
        raise DataError(f"{path}: no <benchmark>/scores.json found (is this an eval output_dir?)")
    run = RunScores(name or path.name, path)
    for scores_path in found:
        try:
            run.benchmarks[scores_path.parent.name] = json.loads(scores_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise DataError(f"{scores_path}: not valid JSON ({exc})") from None
    return run


def run_names(paths: Sequence[str | Path]) -> list[str]:
    """A distinct name per run directory: the part of its path that differs from the others.

    `outputs/poro34b/sft_a/eval` and `outputs/poro34b/dpo_b/eval` are `sft_a` and `dpo_b`; a single run is its
    directory's name. Paths that name the same directory get `(2)`, `(3)` ... so no two rows share a name.
    """
    parts = [Path(p).resolve().parts for p in paths]
    if len(parts) == 1:
        return [parts[0][-1]]
    head = 0
    while all(len(q) > head + 1 for q in parts) and len({q[head] for q in parts}) == 1:
        head += 1
    tail = 0
    while all(len(q) > head + tail + 1 for q in parts) and len({q[len(q) - 1 - tail] for q in parts}) == 1:
        tail += 1
    names = ["/".join(q[head : len(q) - tail]) or q[-1] for q in parts]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return unique


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def _grade(scores: dict) -> str:
    """`6.25 [5.5, 7.0] (14/16)`: the mean grade, its 95% interval, and how many answers it covers of all (the
    rest are parse failures)."""
    grades = scores.get("grades") or {}
    if grades.get("mean") is None:
        return ""
    ci = grades.get("ci95")
    covered = f" ({grades['num']}/{grades['num_judgements']})" if "num_judgements" in grades else ""
    return f"{grades['mean']:.2f}" + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "") + covered


def _win_rate(scores: dict) -> str:
    pairwise = scores.get("pairwise") or {}
    return _percent(pairwise.get("win_rate"))


def table_rows(runs: Sequence[RunScores], *, metric: str = "inst_level_strict_acc") -> list[list[str]]:
    """Header plus one row per run: run, EN (%), FI (%), Resp lang (%), and for every judge benchmark any run has
    (scores.json with kind judge) its mean grade with the 95% interval, its response language rate, and its win rate
    against the baseline when one was compared."""
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    judged = sorted({name for run in runs for name, s in run.benchmarks.items() if s.get("kind") == "judge"})
    compared = {
        name
        for run in runs
        for name, s in run.benchmarks.items()
        if s.get("kind") == "judge" and s.get("pairwise")
    }
    header = ["run", "EN (%)", "FI (%)", "Resp lang (%)"]
    for name in judged:
        header += [f"{name} grade (1-10)", f"{name} resp lang (%)"] + (
            [f"{name} win (%)"] if name in compared else []
        )
    rows = [header]
    for run in runs:
        en = run.benchmarks.get("ifeval_en", {})
        fi = run.benchmarks.get("ifeval_fi", {})
        row = [
            run.name,
            _percent(en.get(metric)),
            _percent(fi.get(metric)),
            _percent(fi.get("response_language_rate")),
        ]
        for name in judged:
            scores = run.benchmarks.get(name, {})
            row += [_grade(scores), _percent(scores.get("response_language_rate"))]
            row += [_win_rate(scores)] if name in compared else []
        rows.append(row)
    return rows


def to_markdown(rows: Sequence[Sequence[str]]) -> str:
    header, *body = rows
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[Sequence[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def category_accuracies(run: RunScores, benchmark: str, *, strict: bool = True) -> dict[str, float]:
    table = run.benchmarks.get(benchmark, {}).get("per_category", {})
    key = "strict_acc" if strict else "loose_acc"
    return {category: values[key] for category, values in table.items()}


def plot_categories(series: dict[str, dict[str, float]], out_path: str | Path, *, title: str) -> Path | None:
    """Grouped bar chart (one group per instruction category, one bar per series); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    categories = sorted({c for values in series.values() for c in values})
    if not categories:
        return None
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(categories)), 4))
    for i, (label, values) in enumerate(series.items()):
        xs = [c + i * width - 0.4 + width / 2 for c in range(len(categories))]
        ax.bar(xs, [100 * values.get(cat, 0.0) for cat in categories], width, label=label)
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels(categories, rotation=30, ha="right")
    ax.set_ylabel("instruction-level strict accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return out_path
