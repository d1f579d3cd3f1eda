"""data/build.py, data/scan.py, data/store.py: the tokenized dataset on disk, built by all ranks together.

The reference is the in-memory path (data.mix.build_mix + data.tokenize.tokenize_records, what sisu did before
the store): the store must give the same examples, reports and statistics, however the sources are cut into
parts and the records into shards, on one rank or several.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import random
import threading
from pathlib import Path

import numpy as np
import pytest
from harness import REPO

import data.build as build
import data.io as io
from data.config import DataConfig, SourceConfig
from data.errors import DataError
from data.group import LOCAL
from data.mix import build_mix, rank_key, select_fraction
from data.pipeline import build_dataset, tokenize_settings
from data.records import ChatRecord
from data.scan import select
from data.sources import load_source
from data.templates import ChatTemplate
from data.tokenize import tokenize_records


def _chats(path: Path, num: int, *, lang: str = "fi", bad_lines: tuple[int, ...] = (), seed: int = 0) -> Path:
    """`num` chats of varied length (some too long for 64 tokens), one broken JSON line at each of `bad_lines`
    (1-based), a blank line now and then."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        line = 0
        for i in range(num):
            line += 1
            if line in bad_lines:
                f.write('{"messages": [\n')
                line += 1
            answer = " ".join(rng.choice(["kyllä", "ei", "ehkä", "aina"]) for _ in range(rng.randint(1, 40)))
            messages = [{"role": "user", "content": f"kysymys {i}"}, {"role": "assistant", "content": answer}]
            if i % 5 == 0:
                messages.insert(0, {"role": "system", "content": "Vastaa lyhyesti."})
            f.write(
                json.dumps({"source_id": f"c{i % (num // 2 or 1)}", "lang": lang, "messages": messages})
                + "\n"
            )
            if i % 17 == 3:
                f.write("\n")
                line += 1
    return path


def _reference(cfg: DataConfig, tokenizer, max_seq_len: int):
    records, reports = build_mix(cfg)
    settings = tokenize_settings(cfg, max_seq_len=max_seq_len)
    template = ChatTemplate.resolve(tokenizer, cfg.template)
    examples, stats = tokenize_records(records, tokenizer=tokenizer, template=template, settings=settings)
    return examples, [r.summary() for r in reports], stats.as_dict()


def _same_as_reference(bundle, cfg, tokenizer, max_seq_len):
    examples, summaries, stats = _reference(cfg, tokenizer, max_seq_len)
    assert [bundle.dataset[i] for i in range(len(bundle.dataset))] == examples
    assert [r.summary() for r in bundle.reports] == summaries
    assert bundle.stats.as_dict() == stats


@pytest.fixture
def small_pieces(monkeypatch):
    """Sources cut in blocks of 300 bytes (many parts) and records in shards of 7: every boundary case."""
    monkeypatch.setattr(io, "BLOCK_BYTES", 300)
    monkeypatch.setattr(build, "records_per_shard", lambda n: 7)


def test_select_is_select_fraction():
    records = [ChatRecord((), "en", f"id{random.Random(i).randint(0, 40)}", f"x:{i}") for i in range(300)]
    for fraction in (0.01, 0.1, 0.37, 0.5, 0.999, 1.0):
        for seed in (0, 3):
            keys = np.array(
                [int.from_bytes(rank_key(seed, r.source_id), "big") for r in records], dtype=np.uint64
            )
            expected = [r.origin for r in select_fraction(records, fraction=fraction, seed=seed)]
            assert [records[i].origin for i in select(keys, fraction=fraction)] == expected


def test_sft_store_equals_the_in_memory_pipeline(tiny_tokenizer, tmp_path, small_pieces):
    en = _chats(tmp_path / "en.jsonl", 40, lang="en", seed=1)
    fi = _chats(tmp_path / "fi.jsonl", 60, bad_lines=(7, 31), seed=2)
    cfg = DataConfig(
        sources=[
            SourceConfig(path=str(en), lang="en", max_records=25),
            SourceConfig(path=str(fi), fraction=0.4),
        ],
        template="chatml",
        truncation="drop",
        prompt_masking=True,
        on_invalid="skip",
        seed=5,
        cache_dir=str(tmp_path / "cache"),
    )
    bundle = build_dataset(cfg, tokenizer=tiny_tokenizer, max_seq_len=64)
    assert len(list((tmp_path / "cache").glob("tokenized-*/shards/shard-*"))) > 3  # really cut in shards
    _same_as_reference(bundle, cfg, tiny_tokenizer, 64)
    assert bundle.reports[1].skipped["malformed_json"] == 2 and bundle.stats.dropped["too_long"] > 0


def test_preference_store_equals_the_in_memory_pipeline(tiny_tokenizer, tmp_path, small_pieces):
    cfg = DataConfig(
        sources=[
            SourceConfig(path=str(REPO / "data/samples/helpsteer2_en.jsonl"), format="helpsteer2", lang="en"),
            SourceConfig(
                path=str(REPO / "data/samples/helpsteer2_fi.jsonl"), format="helpsteer2", fraction=0.5
            ),
        ],
        template="chatml",
        max_prompt_length=40,
        cache_dir=str(tmp_path / "cache"),
    )
    bundle = build_dataset(cfg, tokenizer=tiny_tokenizer, max_seq_len=120)
    _same_as_reference(bundle, cfg, tiny_tokenizer, 120)
    lengths = bundle.lengths()
    assert lengths.tolist() == [e.length for e in bundle.dataset]
    assert bundle.dataset.pair_lengths().tolist() == [
        len(e.prompt_ids) + len(e.chosen_ids) + len(e.rejected_ids) for e in bundle.dataset
    ]


def test_parts_read_every_row_once_with_the_line_numbers_of_the_whole_file(tmp_path, monkeypatch):
    path = _chats(tmp_path / "rows.jsonl", 80, bad_lines=(3, 50))
    path.write_bytes(io.BOM + path.read_bytes().replace(b"\n", b"\r\n", 5))
    whole = [(row.origin, row.data, str(row.error)) for row in io.read_rows(str(path))]
    for block in (1, 2, 63, 300, 10_000):
        monkeypatch.setattr(io, "BLOCK_BYTES", block)
        blocks = [io.describe_block(str(path), i) for i in range(io.num_blocks(str(path)))]
        parts = io.source_parts(str(path), blocks, splittable=True)
        assert len(parts) == len(blocks)
        got = [
            (row.origin, row.data, str(row.error))
            for part in parts
            for row in io.read_rows(str(path), part=part)
        ]
        assert got == whole, block


def test_a_data_error_in_a_later_part_is_the_error_a_single_reader_raises(
    tiny_tokenizer, tmp_path, small_pieces
):
    path = _chats(tmp_path / "rows.jsonl", 60, bad_lines=(40, 55))
    with pytest.raises(DataError) as single:
        load_source(SourceConfig(path=str(path)))
    cfg = DataConfig(sources=[SourceConfig(path=str(path))], template="chatml", cache_dir=str(tmp_path / "c"))
    with pytest.raises(DataError) as parted:
        build_dataset(cfg, tokenizer=tiny_tokenizer, max_seq_len=64)
    assert (
        str(parted.value) == str(single.value) == f"{path}:40: malformed JSON (Expecting value at column 1)"
    )


def test_an_empty_file_read_in_parts_is_still_a_one_line_error(tiny_tokenizer, tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    cfg = DataConfig(sources=[SourceConfig(path=str(path))], template="chatml", cache_dir=str(tmp_path / "c"))
    with pytest.raises(DataError, match=rf"^{path}: file is empty$"):
        build_dataset(cfg, tokenizer=tiny_tokenizer, max_seq_len=64)


def _cfg(tmp_path, **data) -> DataConfig:
    path = tmp_path / "chats.jsonl"
    if not path.exists():
        _chats(path, 30)
    return DataConfig(
        sources=[SourceConfig(path=str(path))], template="chatml", cache_dir=str(tmp_path / "cache"), **data
    )


def test_a_warm_start_reads_no_record_and_tokenizes_nothing(tiny_tokenizer, tmp_path, monkeypatch):
    first = build_dataset(_cfg(tmp_path), tokenizer=tiny_tokenizer, max_seq_len=64)

    def boom(*args, **kwargs):
        raise AssertionError("a warm start must not read records or tokenize")

    monkeypatch.setattr(build, "scan_part", boom)
    monkeypatch.setattr(build, "tokenize_shard", boom)
    again = build_dataset(_cfg(tmp_path), tokenizer=tiny_tokenizer, max_seq_len=64)
    assert list(again.dataset) == list(first.dataset) and again.key == first.key
    assert [r.summary() for r in again.reports] == [r.summary() for r in first.reports]
    with pytest.raises(AssertionError, match="must not read"):  # other settings: another key
        build_dataset(_cfg(tmp_path), tokenizer=tiny_tokenizer, max_seq_len=65)


def test_the_key_follows_the_bytes_of_the_sources(tiny_tokenizer, tmp_path):
    first = build_dataset(_cfg(tmp_path), tokenizer=tiny_tokenizer, max_seq_len=64)
    path = tmp_path / "chats.jsonl"
    data = path.read_bytes()
    path.write_bytes(data.replace(b"kysymys 7", b"kysymys 8", 1))  # same size, other content
    second = build_dataset(_cfg(tmp_path), tokenizer=tiny_tokenizer, max_seq_len=64)
    assert second.key != first.key
    covers = second.dataset.meta["covers"]
    assert covers["sources"][0]["path"] == str(path) and covers["sources"][0]["size"] == len(data)
    assert covers["settings"]["max_seq_len"] == 64 and covers["template"]["name"] == "chatml"
    assert covers["seed"] is None  # no fraction: the subset seed does not matter
    assert len(list((tmp_path / "cache").glob("tokenized-*"))) == 2


def test_a_killed_cold_start_reuses_the_parts_and_shards_it_wrote(
    tiny_tokenizer, tmp_path, small_pieces, monkeypatch
):
    real = build.tokenize_shard
    calls = []

    def dies_at_shard_3(task):
        if task.index == 3:
            raise KeyboardInterrupt  # as a killed job stops: no cleanup
        calls.append(task.index)
        return real(task)

    monkeypatch.setattr(build, "tokenize_shard", dies_at_shard_3)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(_cfg(tmp_path), tokenizer=tiny_tokenizer, max_seq_len=64)
    partial = next((tmp_path / "cache").glob("tokenized-*.partial"))
    assert sorted(p.name for p in (partial / "shards").iterdir()) == [
        "shard-00000",
        "shard-00001",
        "shard-00002",
    ]

    read, tokenized = [], []
    real_each = build.tokenize_each
    monkeypatch.setattr(build, "tokenize_shard", real)
    monkeypatch.setattr(
        build, "scan_part", lambda task, real_scan=build.scan_part: read.append(1) or real_scan(task)
    )
    monkeypatch.setattr(
        build, "tokenize_each", lambda records, **kw: tokenized.append(1) or real_each(records, **kw)
    )
    bundle = build_dataset(_cfg(tmp_path), tokenizer=tiny_tokenizer, max_seq_len=64)
    num_shards = len(bundle.dataset.meta["shards"])
    assert (
        num_shards > 4 and len(tokenized) == num_shards - 3
    )  # shards 0-2 were read back, not tokenized again
    assert read  # the parts were listed again (and read back from their spools)
    assert not partial.exists()
    _same_as_reference(bundle, _cfg(tmp_path), tiny_tokenizer, 64)


@pytest.mark.parametrize("damage", ["truncated_tokens", "other_version", "missing_table", "planted_pickle"])
def test_a_damaged_or_foreign_store_is_rebuilt_with_a_warning_never_loaded(
    tiny_tokenizer, tmp_path, caplog, damage
):
    first = build_dataset(_cfg(tmp_path), tokenizer=tiny_tokenizer, max_seq_len=64)
    expected = list(first.dataset)
    root = first.dataset.root
    marker = tmp_path / "pwned"
    if damage == "truncated_tokens":
        tokens = root / "shards" / "shard-00000" / "tokens.npy"
        tokens.write_bytes(tokens.read_bytes()[:-16])
    elif damage == "other_version":
        meta = json.loads((root / "dataset.json").read_text())
        (root / "dataset.json").write_text(json.dumps({**meta, "version": 2}))
    elif damage == "missing_table":
        (root / "examples.npy").unlink()
    else:

        class Payload:
            def __reduce__(self):
                return (os.system, (f"touch {marker}",))

        (root / "examples.npy").write_bytes(pickle.dumps(Payload()))
    with caplog.at_level(logging.WARNING, logger="sisu"):
        again = build_dataset(_cfg(tmp_path), tokenizer=tiny_tokenizer, max_seq_len=64)
    assert "not a complete tokenized dataset of this sisu" in caplog.text
    assert list(again.dataset) == expected and not marker.exists()
    assert build_dataset(_cfg(tmp_path), tokenizer=tiny_tokenizer, max_seq_len=64).dataset.root == root


def test_a_half_written_shard_is_ignored_and_written_again(
    tiny_tokenizer, tmp_path, small_pieces, monkeypatch, caplog
):
    real = build.tokenize_shard

    def dies_at_shard_2(task):
        if task.index == 2:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(build, "tokenize_shard", dies_at_shard_2)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(_cfg(tmp_path), tokenizer=tiny_tokenizer, max_seq_len=64)
    monkeypatch.setattr(build, "tokenize_shard", real)
    shards = next((tmp_path / "cache").glob("tokenized-*.partial")) / "shards"
    (shards / "shard-00001" / "shard.json").write_text(
        "{"
    )  # torn: a crash mid-write on a filesystem without rename
    (shards / ".shard-00002.half").mkdir()  # a temporary directory of a killed writer
    with caplog.at_level(logging.WARNING, logger="sisu"):
        bundle = build_dataset(_cfg(tmp_path), tokenizer=tiny_tokenizer, max_seq_len=64)
    assert "shard-00001" in caplog.text and "tokenizing it again" in caplog.text
    _same_as_reference(bundle, _cfg(tmp_path), tiny_tokenizer, 64)


def test_caches_of_an_earlier_sisu_are_ignored_with_a_warning(tiny_tokenizer, tmp_path, caplog):
    (tmp_path / "cache").mkdir()
    old = tmp_path / "cache" / "tokenized-0123456789abcdef01234567.npz"
    old.write_bytes(b"an earlier sisu's cache")
    with caplog.at_level(logging.WARNING, logger="sisu"):
        bundle = build_dataset(_cfg(tmp_path), tokenizer=tiny_tokenizer, max_seq_len=64)
    assert "ignoring 1 tokenization cache(s) of an earlier sisu" in caplog.text
    assert len(bundle.dataset) and old.read_bytes() == b"an earlier sisu's cache"


# --- several ranks: threads standing in for processes ---------------------------------------------------------


class ThreadRanks:
    """`world` ranks as threads of this process; a collective waits at most `timeout` seconds for the others, as
    a process group's does (threading.BrokenBarrierError otherwise)."""

    def __init__(self, world: int, timeout: float | None = None) -> None:
        self.world = world
        self.timeout = timeout
        self.barrier = threading.Barrier(world)
        self.slots: list = [None] * world

    def group(self, rank: int):
        ranks = self

        class Group:
            world_size = ranks.world
            timeout_seconds = ranks.timeout

            def __init__(self) -> None:
                self.rank = rank

            def all_gather(self, obj):
                ranks.slots[rank] = obj
                ranks.barrier.wait(ranks.timeout)
                out = list(ranks.slots)
                ranks.barrier.wait(ranks.timeout)
                return out

            def all_reduce(self, values, *, op="sum"):
                fn = {"sum": sum, "max": max, "min": min}[op]
                return [fn(column) for column in zip(*self.all_gather(list(values)))]

        return Group()

    def run(self, fn):
        """fn(group) on every rank; the results (or exceptions) in rank order."""
        out: list = [None] * self.world

        def one(rank):
            try:
                out[rank] = fn(self.group(rank))
            except BaseException as exc:  # noqa: BLE001 - returned to the test
                out[rank] = exc

        threads = [threading.Thread(target=one, args=(r,)) for r in range(self.world)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out


def test_two_ranks_build_the_dataset_one_rank_builds(tiny_tokenizer, tmp_path, small_pieces):
    import copy

    cfg = _cfg(tmp_path, prompt_masking=True)
    tokenizers = [copy.deepcopy(tiny_tokenizer) for _ in range(2)]
    results = ThreadRanks(2).run(
        lambda g: build_dataset(cfg, tokenizer=tokenizers[g.rank], max_seq_len=64, group=g)
    )
    assert all(not isinstance(r, BaseException) for r in results), results
    one = build_dataset(
        dataclasses.replace(cfg, cache_dir=str(tmp_path / "one")), tokenizer=tiny_tokenizer, max_seq_len=64
    )
    for bundle in results:
        assert list(bundle.dataset) == list(one.dataset)
    _same_as_reference(results[0], cfg, tiny_tokenizer, 64)


def test_a_data_error_reaches_every_rank_as_the_same_line(tiny_tokenizer, tmp_path, small_pieces):
    import copy

    path = _chats(tmp_path / "rows.jsonl", 60, bad_lines=(20, 45))
    cfg = DataConfig(sources=[SourceConfig(path=str(path))], template="chatml", cache_dir=str(tmp_path / "c"))
    tokenizers = [copy.deepcopy(tiny_tokenizer) for _ in range(2)]
    results = ThreadRanks(2).run(
        lambda g: build_dataset(cfg, tokenizer=tokenizers[g.rank], max_seq_len=64, group=g)
    )
    assert all(isinstance(r, DataError) for r in results)
    assert {str(r) for r in results} == {f"{path}:20: malformed JSON (Expecting value at column 1)"}


def test_no_rank_waits_in_a_collective_while_another_tokenizes(tiny_tokenizer, tmp_path, monkeypatch):
    """Rank 0 tokenizes for 3 s while rank 1 has nothing to do; every collective gives up after 0.5 s. The
    build still completes: the ranks meet every poll (0.05 s here), never across the work."""
    import copy
    import time

    real = build.tokenize_shard

    def slow(task):
        time.sleep(3.0)
        return real(task)

    monkeypatch.setattr(build, "tokenize_shard", slow)  # one shard (30 records): rank 0's
    cfg = _cfg(tmp_path)
    tokenizers = [copy.deepcopy(tiny_tokenizer) for _ in range(2)]
    results = ThreadRanks(2, timeout=0.5).run(
        lambda g: build_dataset(cfg, tokenizer=tokenizers[g.rank], max_seq_len=64, group=g)
    )
    assert all(not isinstance(r, BaseException) for r in results), results
    assert len(results[0].dataset) == len(results[1].dataset) == 30


def test_a_bug_keeps_its_traceback_on_its_rank_and_stops_the_others(tiny_tokenizer, tmp_path, monkeypatch):
    import copy
    import traceback

    real = build.tokenize_shard

    def buggy(task):
        if task.index == 1:  # rank 1's shard
            raise ZeroDivisionError("a bug in sisu")
        return real(task)

    monkeypatch.setattr(build, "tokenize_shard", buggy)
    monkeypatch.setattr(build, "records_per_shard", lambda n: 20)  # two shards: one per rank
    cfg = _cfg(tmp_path)
    tokenizers = [copy.deepcopy(tiny_tokenizer) for _ in range(2)]
    results = ThreadRanks(2).run(
        lambda g: build_dataset(cfg, tokenizer=tokenizers[g.rank], max_seq_len=64, group=g)
    )
    assert isinstance(results[1], ZeroDivisionError)
    assert "in buggy" in "".join(traceback.format_exception(results[1]))
    assert isinstance(results[0], RuntimeError)
    assert (
        str(results[0])
        == "tokenizing failed on rank 1 with ZeroDivisionError (its traceback is in that rank's output)"
    )


def test_local_group_is_one_rank():
    assert LOCAL.all_reduce([3, 4], op="min") == [3, 4] and LOCAL.all_gather("x") == ["x"]


def test_ranks_that_do_not_share_the_cache_directory_stop_with_one_line(
    tiny_tokenizer, tmp_path, monkeypatch
):
    """Two "nodes" whose data.cache_dir are different directories (a node-local /tmp): rank 1 never sees what
    rank 0 writes, and both stop with the same line naming the setting."""
    import copy

    monkeypatch.setattr(build, "VISIBILITY_WAIT", 0.3)
    cfgs = [_cfg(tmp_path), dataclasses.replace(_cfg(tmp_path), cache_dir=str(tmp_path / "node1"))]
    tokenizers = [copy.deepcopy(tiny_tokenizer) for _ in range(2)]
    results = ThreadRanks(2).run(
        lambda g: build_dataset(cfgs[g.rank], tokenizer=tokenizers[g.rank], max_seq_len=64, group=g)
    )
    assert all(isinstance(r, DataError) for r in results), results
    assert {str(r) for r in results} == {
        f"data.cache_dir {tmp_path / 'cache'}: ranks [1] do not see the files rank 0 writes there; every rank "
        "needs the same data.cache_dir, on a filesystem all nodes share"
    }
