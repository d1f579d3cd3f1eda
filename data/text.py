"""Plain-text helpers shared by the data pipeline and the generation jobs above it."""

from __future__ import annotations

from collections.abc import Sequence


def cut_at_stop(text: str, stop_strings: Sequence[str]) -> str:
    """`text` up to the earliest occurrence of any of `stop_strings` (all of it when none occurs)."""
    end = len(text)
    for stop in stop_strings:
        found = text.find(stop) if stop else -1
        if 0 <= found < end:
            end = found
    return text[:end]
