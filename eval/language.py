"""Share of responses in the expected language (the paper's "Resp lang %"), with langdetect. No torch."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from eval.ifeval.langid import detect_language


def response_language_rate(rows: Iterable[dict[str, Any]], language: str) -> tuple[float, list[Any]]:
    """(fraction of rows whose `response` langdetect classifies as `language`, keys of those that are not).

    An empty response, or one without letters that langdetect can use, counts as not in the language.
    """
    total, failed = 0, []
    for row in rows:
        total += 1
        text = str(row.get("response", "")).strip()
        if not text or detect_language(text) != language:
            failed.append(row.get("key"))
    return ((total - len(failed)) / total if total else 0.0), failed
