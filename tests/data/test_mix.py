"""Mixes: nested deterministic fraction subsets and en-fi mixes of several sources."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data.config import DataConfig, SourceConfig
from data.errors import DataError
from data.mix import build_mix, select_fraction, subset_size

FRACTIONS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


@dataclass(frozen=True)
class Rec:
    source_id: str
    index: int


def recs(n: int) -> list[Rec]:
    return [Rec(f"id-{i}", i) for i in range(n)]


@pytest.mark.parametrize(
    ("n", "fraction", "k"),
    [
        (100, 0.1, 10),
        (10, 0.25, 3),
        (10, 0.15, 2),
        (7, 0.5, 4),
        (3, 0.1, 1),
        (1, 0.01, 1),
        (0, 0.5, 0),
        (4692, 0.1, 469),
        (4692, 1.0, 4692),
    ],
)
def test_subset_size_rounds_half_up_with_at_least_one(n: int, fraction: float, k: int) -> None:
    assert subset_size(n, fraction) == k


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        select_fraction(recs(3), fraction=fraction, seed=0)


def test_nested_counted_ordered_and_deterministic() -> None:
    records = recs(250)
    subsets = [select_fraction(records, fraction=f, seed=3) for f in FRACTIONS]
    assert [len(s) for s in subsets] == [25, 50, 75, 100, 125, 150, 175, 200, 225, 250]
    for small, large in zip(subsets, subsets[1:]):
        assert set(small) < set(large)
    for subset in subsets:
        assert [r.index for r in subset] == sorted(r.index for r in subset)  # original order kept
    assert subsets[-1] == records
    assert select_fraction(records, fraction=0.3, seed=3) == subsets[2]
    other = select_fraction(records, fraction=0.3, seed=4)
    assert len(other) == 75 and set(other) != set(subsets[2])
    # A hash ranking, not a prefix: the 10% subset is spread over the whole source.
    assert max(r.index for r in subsets[0]) > 125


def test_subset_follows_source_ids_not_positions() -> None:
    english = recs(40)
    finnish = list(reversed([Rec(r.source_id, 1000 + r.index) for r in english]))  # same ids, other order
    en_ids = {r.source_id for r in select_fraction(english, fraction=0.25, seed=0)}
    fi_ids = {r.source_id for r in select_fraction(finnish, fraction=0.25, seed=0)}
    assert en_ids == fi_ids


def test_duplicate_source_ids_keep_nesting() -> None:
    records = [Rec(f"id-{i // 2}", i) for i in range(30)]
    small = select_fraction(records, fraction=0.2, seed=1)
    large = select_fraction(records, fraction=0.5, seed=1)
    assert len(small) == 6 and len(large) == 15 and set(small) < set(large)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 300), a=st.floats(0.001, 1.0), b=st.floats(0.001, 1.0), seed=st.integers(0, 2**31))
def test_nesting_property(n: int, a: float, b: float, seed: int) -> None:
    low, high = sorted((a, b))
    records = recs(n)
    small = select_fraction(records, fraction=low, seed=seed)
    large = select_fraction(records, fraction=high, seed=seed)
    assert set(small) <= set(large)
    assert len(small) == (0 if n == 0 else min(n, max(1, math.floor(low * n + 0.5))))


# --- build_mix on files ------------------------------------------------------------------------------------


def chat_file(path: Path, *, n: int, lang: str) -> str:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"{lang} q{i}"},
                {"role": "assistant", "content": f"{lang} a{i}"},
            ],
            "source_id": f"oasst-{i}",
            "lang": lang,
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(("percent", "finnish"), [(10, 6), (20, 12), (50, 30), (100, 60)])
def test_en_fi_mix_counts(tmp_path: Path, percent: int, finnish: int) -> None:
    en = chat_file(tmp_path / "en.jsonl", n=60, lang="en")
    fi = chat_file(tmp_path / "fi.jsonl", n=60, lang="fi")
    cfg = DataConfig(
        sources=[
            SourceConfig(path=en, format="messages", lang="en"),
            SourceConfig(path=fi, format="messages", lang="fi", fraction=percent / 100),
        ],
        seed=0,
    )
    records, reports = build_mix(cfg)
    assert [r.lang for r in records] == ["en"] * 60 + ["fi"] * finnish  # config order, all English first
    assert [(rep.source, rep.num_records, rep.num_selected) for rep in reports] == [
        (en, 60, 60),
        (fi, 60, finnish),
    ]


def test_en_fi_mixes_are_nested(tmp_path: Path) -> None:
    en = chat_file(tmp_path / "en.jsonl", n=60, lang="en")
    fi = chat_file(tmp_path / "fi.jsonl", n=60, lang="fi")
    previous: set[str] = set()
    for fraction in FRACTIONS:
        cfg = DataConfig(
            sources=[
                SourceConfig(path=en, format="messages"),
                SourceConfig(path=fi, format="messages", fraction=fraction),
            ],
            seed=7,
        )
        records, _ = build_mix(cfg)
        finnish = {r.source_id for r in records if r.lang == "fi"}
        assert previous <= finnish and len(finnish) == round(fraction * 60)
        previous = finnish


def test_build_mix_uses_on_invalid_and_rejects_mixed_kinds(tmp_path: Path) -> None:
    en = chat_file(tmp_path / "en.jsonl", n=3, lang="en")
    with open(en, "a", encoding="utf-8") as handle:
        handle.write("{broken\n")
    with pytest.raises(DataError, match=r"en\.jsonl:4: malformed JSON"):
        build_mix(DataConfig(sources=[SourceConfig(path=en)]))
    records, (report,) = build_mix(DataConfig(sources=[SourceConfig(path=en)], on_invalid="skip"))
    assert len(records) == 3 and report.skipped["malformed_json"] == 1
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="mixes chat and preference formats"):
        build_mix(
            DataConfig(sources=[SourceConfig(path=en), SourceConfig(path=str(pairs), format="preference")])
        )
    with pytest.raises(DataError, match="data.sources is empty"):
        build_mix(DataConfig())
