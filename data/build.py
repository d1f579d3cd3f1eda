"""Sources -> the tokenized dataset on disk (data/store.py), built once by all ranks together, then mapped.

1. Fingerprint: every source's bytes are hashed in blocks (data/io.py), the blocks spread over the ranks; with
   the tokenizer, template and settings they make the key of the dataset directory. No row is parsed, no record
   hashed: a warm start hashes the files, checks the key and maps the arrays.
2. Cold start (no complete dataset under the key): the parts of every source are read, validated and spooled by
   all ranks (data/scan.py), the mix is selected, and its records are cut into shards of consecutive records,
   shard j tokenized by rank j mod world size (in `data.num_workers` processes each) and written atomically.
   Shards and parts already written by a killed cold start are reused. Rank 0 then writes the table of all
   examples and `dataset.json` and moves the directory into place; every rank maps it.
3. Every wait goes through `data.group.run_together`, so no rank waits in a collective for another's work.

Multi-node jobs need `data.cache_dir` on a filesystem every node mounts: a cold start checks that every rank
sees the directory rank 0 created and stops with one line if not.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import secrets
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data.config import DataConfig
from data.errors import DataError
from data.group import Group, Item, run_together
from data.io import Block, describe_block, num_blocks, source_kind, source_parts
from data.records import LoadReport
from data.scan import (
    PartTask,
    SourceScan,
    merge_source,
    mix_segments,
    part_directory,
    read_segments,
    scan_part,
)
from data.sources import SPLITTABLE_FORMATS, check_source
from data.store import (
    STORE_VERSION,
    StoreProblem,
    TokenizedDataset,
    finalize,
    read_shard,
    shard_name,
    write_shard,
)
from data.templates import ChatTemplate
from data.tokenize import TokenizeSettings, TokenizeStats, finish_stats, init_worker, tokenize_each

logger = logging.getLogger("sisu")
MIN_SHARD, MAX_SHARD, TARGET_SHARDS = 64, 4096, 256
VISIBILITY_WAIT = 10.0  # seconds a rank waits to see a file rank 0 wrote (network filesystems' caches lag)


def records_per_shard(num_records: int) -> int:
    """Shard size from the number of records alone (not the world size), so that a cold start killed and resumed
    on another number of ranks reuses its shards: about TARGET_SHARDS shards, each 64..4096 records."""
    return min(MAX_SHARD, max(MIN_SHARD, -(-num_records // TARGET_SHARDS)))


# --- 1. fingerprints and the key -------------------------------------------------------------------------------


def _describe(task: tuple[str, int, str | None, str]) -> Block:
    path, index, name, split = task
    return describe_block(path, index, name=name, split=split)


def fingerprint_sources(cfg: DataConfig, group: Group) -> list[list[Block]]:
    """Every source's blocks (digest and newline count), hashed by all ranks together."""
    for source in cfg.sources:
        check_source(source, on_invalid=cfg.on_invalid)
        source_kind(source.path)  # a missing file or an unknown suffix: the same one line on every rank
    tasks = [
        (s, (source.path, b, source.name, source.split))
        for s, source in enumerate(cfg.sources)
        for b in range(num_blocks(source.path))
    ]
    items = [Item(i, 1, task) for i, (_, task) in enumerate(tasks) if i % group.world_size == group.rank]
    mine = run_together(
        group, items, _describe, total_units=len(tasks), what="hashing sources", unit="blocks"
    )
    found: dict[int, Block] = {}
    for part in group.all_gather(mine):
        found.update(part)
    blocks: list[list[Block]] = [[] for _ in cfg.sources]
    for i, (s, _) in enumerate(tasks):
        blocks[s].append(found[i])
    return blocks


def tokenizer_digest(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocab = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(vocab.encode()).hexdigest()


def dataset_key(
    cfg: DataConfig,
    blocks: list[list[Block]],
    *,
    kind: str,
    tokenizer: Any,
    template: ChatTemplate,
    settings: TokenizeSettings,
) -> tuple[str, dict]:
    """(key, what it covers): the sources (settings and content), the subset seed where a fraction uses it, the
    tokenizer's vocabulary, the template and the tokenization settings."""
    sources = []
    for source, source_blocks in zip(cfg.sources, blocks):
        content = hashlib.sha256("".join(b.digest for b in source_blocks).encode()).hexdigest()
        sources.append(
            {
                **dataclasses.asdict(source),
                "content_sha256": content,
                "size": sum(b.size for b in source_blocks),
            }
        )
    covers = {
        "store_version": STORE_VERSION,
        "kind": kind,
        "sources": sources,
        "seed": cfg.seed if any(source.fraction < 1.0 for source in cfg.sources) else None,
        "tokenizer_sha256": tokenizer_digest(tokenizer),
        "template": {
            "name": template.name,
            "source_sha256": hashlib.sha256(template.source.encode()).hexdigest(),
            "end_of_turn": template.end_of_turn,
        },
        "settings": dataclasses.asdict(settings),
    }
    key = hashlib.sha256(json.dumps(covers, sort_keys=True).encode()).hexdigest()[:24]
    return key, covers


# --- opening --------------------------------------------------------------------------------------------------


def _open_everywhere(final: Path, key: str, group: Group) -> TokenizedDataset | None:
    """The dataset if every rank can map it, None if none can; the ranks must agree."""
    dataset = TokenizedDataset.open(final, key=key)
    seen = group.all_gather((dataset is not None, str(final.parent)))
    if all(ok for ok, _ in seen):
        return dataset
    if any(ok for ok, _ in seen):
        blind = [rank for rank, (ok, _) in enumerate(seen) if not ok]
        raise DataError(
            f"data.cache_dir {seen[0][1]}: ranks {blind} cannot read the tokenized data the other ranks read; "
            "every rank needs the same data.cache_dir, on a filesystem all nodes share"
        )
    return None


def prepare(
    cfg: DataConfig,
    *,
    kind: str,
    tokenizer: Any,
    template: ChatTemplate,
    settings: TokenizeSettings,
    cache_dir: Path,
    group: Group,
    max_records: int | None = None,
) -> TokenizedDataset:
    """The tokenized dataset of `cfg`: mapped from `cache_dir` when complete, else built there first. With
    `max_records` (a dry run) and no complete dataset, at most that many records are tokenized, spread evenly
    over the mix: the dataset's meta then says `sample_of` (all records are still read and validated)."""
    started = time.monotonic()
    blocks = fingerprint_sources(cfg, group)
    key, covers = dataset_key(
        cfg, blocks, kind=kind, tokenizer=tokenizer, template=template, settings=settings
    )
    final = cache_dir / f"tokenized-{key}"
    dataset = _open_everywhere(final, key, group)
    if dataset is None:
        built, built_key = _build(cfg, blocks, key=key, covers=covers, kind=kind, final=final,
                                  tokenizer=tokenizer, template=template, settings=settings, group=group,
                                  max_records=max_records)  # fmt: skip
        dataset = _open_everywhere(built, built_key, group)
        if dataset is None:
            raise DataError(
                f"data.cache_dir {cache_dir}: the tokenized data just written cannot be read back"
            )
    elif group.rank == 0:
        logger.info(
            "tokenized data: %d examples from %s (memory-mapped; checked in %.1fs)",
            len(dataset),
            final,
            time.monotonic() - started,
        )
    return dataset


# --- 2. the cold start ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ShardTask:
    """One shard to tokenize (what a worker process gets)."""

    index: int
    kind: str
    key: str
    shards_dir: str
    segments: list[tuple[str, np.ndarray, int]]


def tokenize_shard(task: ShardTask) -> dict:
    """Tokenize the records of one shard and write it (or return the shard a killed run already wrote)."""
    directory = Path(task.shards_dir) / shard_name(task.index)
    if directory.exists():
        try:
            info, _ = read_shard(directory, key=task.key, kind=task.kind)
            return info
        except StoreProblem as exc:
            logger.warning("ignoring %s (%s); tokenizing it again", directory, exc)
            shutil.rmtree(directory, ignore_errors=True)
    records = list(read_segments(task.segments))
    kept: list[int] = []
    examples, stats = tokenize_each((record for record, _ in records), kept=kept)
    sources = [records[position][1] for position in kept]
    try:
        return write_shard(
            Path(task.shards_dir), task.index, kind=task.kind, key=task.key, examples=examples, sources=sources,
            stats=stats.as_dict(),
        )  # fmt: skip
    except OSError as exc:
        raise DataError(f"data.cache_dir: cannot write {directory}: {exc.strerror or exc}") from None


def _on_rank0(group: Group, fn: Any, *, what: str) -> Any:
    """Run fn() on rank 0 while the others wait (polling); every rank gets rank 0's error."""
    items = [Item(0, 1, None)] if group.rank == 0 else []
    results = run_together(group, items, lambda _: fn(), total_units=1, what=what, unit="steps")
    return results.get(0)


def _prepare_directory(partial: Path, final: Path) -> str:
    """Rank 0: a fresh start or the partial directory of a killed one; returns the probe's nonce."""
    try:
        if final.exists():  # not a complete store of this sisu (the open warned): build it again
            shutil.rmtree(final)
        partial.mkdir(parents=True, exist_ok=True)
        nonce = secrets.token_hex(8)
        (partial / f"probe-{nonce}").touch()
    except OSError as exc:
        raise DataError(
            f"data.cache_dir {partial.parent}: cannot write the tokenized data there ({exc.strerror or exc}); "
            "set data.cache_dir to a writable directory every rank can read"
        ) from None
    return nonce


def _check_shared(partial: Path, nonce: str | None, group: Group) -> None:
    """Every rank sees the probe rank 0 wrote (a shared filesystem), else one line naming the setting."""
    (nonce,) = [n for n in group.all_gather(nonce) if n is not None]
    probe = partial / f"probe-{nonce}"
    deadline = time.monotonic() + VISIBILITY_WAIT
    while not probe.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    seen = group.all_gather((probe.exists(), str(partial.parent)))
    if not all(ok for ok, _ in seen):
        blind = [rank for rank, (ok, _) in enumerate(seen) if not ok]
        raise DataError(
            f"data.cache_dir {seen[0][1]}: ranks {blind} do not see the files rank 0 writes there; every "
            "rank needs the same data.cache_dir, on a filesystem all nodes share"
        )


def _scan(cfg: DataConfig, blocks: list[list[Block]], partial: Path, group: Group) -> list[SourceScan]:
    tasks: list[PartTask] = []
    for s, source in enumerate(cfg.sources):
        parts = source_parts(source.path, blocks[s], splittable=source.format in SPLITTABLE_FORMATS)
        for p, part in enumerate(parts):
            directory = part_directory(partial / "scan", s, p)
            tasks.append(PartTask(s, source, part, cfg.on_invalid, cfg.seed, str(directory)))
    items = [Item(i, 1, t) for i, t in enumerate(tasks) if i % group.world_size == group.rank]
    mine = run_together(
        group, items, scan_part, total_units=len(tasks), what="reading sources", unit="parts",
        num_workers=cfg.num_workers,
    )  # fmt: skip
    summaries: dict[int, dict] = {}
    for part in group.all_gather(mine):
        summaries.update(part)
    scans = []
    for s, source in enumerate(cfg.sources):
        own = [i for i, t in enumerate(tasks) if t.source_index == s]
        scans.append(
            merge_source(source, [Path(tasks[i].directory) for i in own], [summaries[i] for i in own])
        )
    return scans


def _build(
    cfg: DataConfig,
    blocks: list[list[Block]],
    *,
    key: str,
    covers: dict,
    kind: str,
    final: Path,
    tokenizer: Any,
    template: ChatTemplate,
    settings: TokenizeSettings,
    group: Group,
    max_records: int | None = None,
) -> tuple[Path, str]:
    """Build the store `final` and return (its path, its key); with `max_records` and more records than that, a
    store of an evenly spread sample of them instead, beside it (the scan stays for the full build)."""
    partial = final.with_name(final.name + ".partial")
    old = sorted(final.parent.glob("tokenized-*.npz"))  # sisu before the store: one .npz file per dataset
    if old and group.rank == 0:
        logger.warning(
            "ignoring %d tokenization cache(s) of an earlier sisu in %s (tokenized-*.npz, %.0f MB; safe to delete)",
            len(old), final.parent, sum(p.stat().st_size for p in old) / 1e6,
        )  # fmt: skip
    nonce = _on_rank0(group, lambda: _prepare_directory(partial, final), what="preparing the cache")
    _check_shared(partial, nonce, group)
    scans = _scan(cfg, blocks, partial, group)
    total = sum(len(scan.selected) for scan in scans)
    if max_records is not None and total > max_records:
        indices = np.unique(np.linspace(0, total - 1, max_records).round().astype(np.int64))
        sample_key = f"{key}-sample{len(indices)}"
        target = final.with_name(f"tokenized-{sample_key}")
        if _open_everywhere(target, sample_key, group) is None:
            sample_partial = target.with_name(target.name + ".partial")
            _tokenize(cfg, scans, indices, partial=sample_partial, final=target, key=sample_key,
                      covers={**covers, "sample_of": total}, kind=kind, tokenizer=tokenizer, template=template,
                      settings=settings, group=group)  # fmt: skip
        return target, sample_key
    _tokenize(cfg, scans, np.arange(total, dtype=np.int64), partial=partial, final=final, key=key, covers=covers,
              kind=kind, tokenizer=tokenizer, template=template, settings=settings, group=group)  # fmt: skip
    return final, key


def _tokenize(
    cfg: DataConfig,
    scans: list[SourceScan],
    indices: np.ndarray,
    *,
    partial: Path,
    final: Path,
    key: str,
    covers: dict,
    kind: str,
    tokenizer: Any,
    template: ChatTemplate,
    settings: TokenizeSettings,
    group: Group,
) -> None:
    """Tokenize the records `indices` of the mix into shards of consecutive records, then (rank 0) the table,
    dataset.json and the move of `partial` to `final`."""
    total = len(indices)
    size = records_per_shard(total)
    num_shards = -(-total // size)
    if group.rank == 0:
        logger.info(
            "tokenized data: building %s: %d records in %d shards, %d rank(s) x %d worker(s)",
            final, total, num_shards, group.world_size, cfg.num_workers,
        )  # fmt: skip
    shards_dir = partial / "shards"
    items = [
        Item(j, len(indices[j * size : (j + 1) * size]),
             ShardTask(j, kind, key, str(shards_dir), mix_segments(scans, indices[j * size : (j + 1) * size])))
        for j in range(group.rank, num_shards, group.world_size)
    ]  # fmt: skip
    mine = run_together(
        group, items, tokenize_shard, total_units=total, what="tokenizing", num_workers=cfg.num_workers,
        initializer=init_worker, initargs=(tokenizer, template, settings),
    )  # fmt: skip
    infos: dict[int, dict] = {}
    for part in group.all_gather(mine):
        infos.update(part)
    stats = TokenizeStats()
    for j in range(num_shards):
        stats.merge(TokenizeStats.from_dict(infos[j]["stats"]))
    finish_stats(stats, tokenizer=tokenizer, template=template)
    if stats.num_examples == 0:
        raise DataError("every record was dropped during tokenization (see the drop counts)")
    meta = {
        "version": STORE_VERSION,
        "key": key,
        "kind": kind,
        "num_examples": stats.num_examples,
        "num_tokens": sum(infos[j]["num_tokens"] for j in range(num_shards)),
        "shards": [{"num_examples": infos[j]["num_examples"]} for j in range(num_shards)],
        "langs": sorted({lang for info in infos.values() for lang in info["langs"]}),
        "sources": [source.path for source in cfg.sources],
        "reports": [scan.report.as_dict() for scan in scans],
        "stats": stats.as_dict(),
        "covers": covers,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }

    def write() -> None:
        shutil.rmtree(partial / "scan", ignore_errors=True)
        for probe in partial.glob("probe-*"):
            probe.unlink()
        finalize(partial, final, meta=meta)

    _on_rank0(group, write, what="writing the tokenized dataset")


def reports_of(dataset: TokenizedDataset) -> list[LoadReport]:
    return [LoadReport.from_dict(report) for report in dataset.meta["reports"]]


def stats_of(dataset: TokenizedDataset) -> TokenizeStats:
    return TokenizeStats.from_dict(dataset.meta["stats"])


__all__: Sequence[str] = ["prepare", "records_per_shard", "reports_of", "stats_of", "tokenize_shard"]
