"""The outputs of a translation: one file per source, rejected.jsonl, report.json, and the printed summary."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from data.files import atomic_write_text
from data.records import LoadReport
from data.translate.clean import REASONS
from data.translate.items import Item, output_format
from eval.engine import read_done, rewrite_rows
from eval.translation.config import TranslateConfig, output_names, settings

PROGRESS = "progress.jsonl"
REJECTED = "rejected.jsonl"
REPORT = "report.json"
EXAMPLES_PER_REASON = 3


def finalize(cfg: TranslateConfig, items: Sequence[Item], reports: Sequence[LoadReport]) -> dict:
    """Write the per-source outputs, rejected.jsonl and report.json from progress.jsonl; return the report."""
    out = Path(cfg.output_dir)
    rows = read_done(out / PROGRESS)
    missing = [item.key for item in items if item.key not in rows]
    if missing:
        raise RuntimeError(f"{len(missing)} items are missing from {out / PROGRESS} (e.g. {missing[0]})")
    names = output_names(cfg)
    accepted: list[list[dict]] = [[] for _ in cfg.sources]
    rejected, removed, flagged = [], Counter(), Counter()
    examples: dict[str, list[dict]] = {}
    segments = 0
    for item in items:
        row = rows[item.key]
        segments += row["segments"]
        if row["status"] == "accepted":
            accepted[item.source].append(row["record"])
            continue
        rejected.append({**row["record"], "reasons": row["reasons"], "problems": row["problems"]})
        removed[row["reasons"][0]] += 1
        for problem in row["problems"]:
            flagged[problem["reason"]] += 1
            shown = examples.setdefault(problem["reason"], [])
            if len(shown) < EXAMPLES_PER_REASON:
                shown.append({"source_id": item.record.source_id, **problem})
    sources = []
    for index, source in enumerate(cfg.sources):
        rewrite_rows(out / names[index], accepted[index])
        mine = [item for item in items if item.source == index]
        report = reports[index]
        sources.append(
            {
                "path": source.path,
                "format": source.format,
                "output": names[index],
                "output_format": output_format(mine[0].record) if mine else None,
                "items_in": len(mine),
                "items_out": len(accepted[index]),
                "load": {
                    "rows": report.num_rows,
                    "records": report.num_records,
                    "selected": report.num_selected,
                    "skipped": dict(report.skipped),
                },
            }
        )
    rewrite_rows(out / REJECTED, rejected)
    items_out = sum(len(rows_) for rows_ in accepted)
    report = {
        "items_in": len(items),
        "items_out": items_out,
        "removed": len(items) - items_out,
        "removed_by_reason": {reason: removed[reason] for reason in REASONS},
        "flagged_by_reason": {reason: flagged[reason] for reason in REASONS},
        "examples": {reason: examples[reason] for reason in REASONS if reason in examples},
        "segments": segments,
        "sources": sources,
        "rejected": REJECTED,
        "settings": settings(cfg),
    }
    atomic_write_text(out / REPORT, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


def format_summary(report: dict, *, path: str = "") -> str:
    """The printed summary: per source in/out, then removals by reason with one example each."""
    langs = report["settings"]
    lines = [
        f"translation {langs['source_lang']} -> {langs['target_lang']}: {report['items_in']} items in, "
        f"{report['items_out']} out, {report['removed']} removed ({report['segments']} segments)"
        + (f"  [{path}]" if path else ""),
        "",
        f"  {'source':<40} {'in':>6} {'out':>6}  output",
    ]
    for source in report["sources"]:
        lines.append(
            f"  {source['path']:<40} {source['items_in']:>6} {source['items_out']:>6}  "
            f"{source['output']} (format: {source['output_format']})"
        )
    lines += [
        "",
        "  removed = items whose first failing filter this is; flagged = items failing it at all",
        f"  {'reason':<22} {'removed':>7} {'flagged':>7}  example",
    ]
    for reason in REASONS:
        shown = report["examples"].get(reason, [])
        example = ""
        if shown:
            first = shown[0]
            example = f"{first['source_id']} {first['field']}: {first['detail']}: {first['snippet'][:60]!r}"
        lines.append(
            f"  {reason:<22} {report['removed_by_reason'][reason]:>7} "
            f"{report['flagged_by_reason'][reason]:>7}  {example}"
        )
    return "\n".join(lines)
