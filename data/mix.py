"""Data mixes: every source of a DataConfig, each subset to its `fraction`, concatenated in config order.

Subsets are nested and deterministic: records are ranked by a hash of (seed, source_id) and the first k are
kept, so the 10% subset is inside the 20% subset, and an English source and its Finnish translation (which
share source_ids) are subset alike. k = floor(fraction * n + 0.5) (round half up), at least 1.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import TypeVar

from data.config import DataConfig
from data.errors import DataError
from data.records import LoadReport
from data.sources import CHAT_FORMATS, Record, load_source

R = TypeVar("R")


def subset_size(n: int, fraction: float) -> int:
    """How many of n records a fraction keeps: round half up, at least one of a non-empty source."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if n == 0:
        return 0
    return min(n, max(1, math.floor(fraction * n + 0.5)))


def rank_key(seed: int, source_id: str) -> bytes:
    """The subset ranking key of a record (8 bytes; data/scan.py compares them as big-endian integers)."""
    return hashlib.blake2b(f"{seed}\x00{source_id}".encode(), digest_size=8).digest()


def select_fraction(records: Sequence[R], *, fraction: float, seed: int) -> list[R]:
    """The records of the `fraction` subset for `seed`, in their original order (see the module docstring).

    Records sharing a source_id rank next to each other (ties broken by position), so duplicates do not break
    nesting.
    """
    k = subset_size(len(records), fraction)
    if k == len(records):
        return list(records)
    order = sorted(range(len(records)), key=lambda i: (rank_key(seed, records[i].source_id), i))
    keep = set(order[:k])
    return [record for i, record in enumerate(records) if i in keep]


def build_mix(cfg: DataConfig) -> tuple[list[Record], list[LoadReport]]:
    """All sources loaded with cfg.on_invalid, subset with select_fraction(cfg.seed), concatenated in order.

    Each report's `num_selected` holds the size of its source's subset. Chat and preference formats cannot
    be mixed (a job trains on one kind).
    """
    if not cfg.sources:
        raise DataError("data.sources is empty: add at least one source")
    kinds = {"chat" if source.format in CHAT_FORMATS else "preference" for source in cfg.sources}
    if len(kinds) > 1:
        formats = ", ".join(f"{s.path} ({s.format})" for s in cfg.sources)
        raise DataError(f"data.sources mixes chat and preference formats: {formats}")
    mix: list[Record] = []
    reports = []
    for source in cfg.sources:
        records, report = load_source(source, on_invalid=cfg.on_invalid)
        selected = select_fraction(records, fraction=source.fraction, seed=cfg.seed)
        report.num_selected = len(selected)
        mix.extend(selected)
        reports.append(report)
    return mix, reports
