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


def format_duration(seconds: float) -> str:
    """A duration as progress lines print it: 42s, 3m07s, 2h05m."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
