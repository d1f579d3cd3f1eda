"""Reading every source once, in parts, by all ranks together: validated records spooled to disk, then the mix.

A part (data/io.py: a block of a JSON lines file, a range of parquet or hub rows, or a whole source whose
format needs all its rows at once) is read and validated by one worker, which writes its records to a spool
(`records.jsonl`, one validated record per line, with byte offsets in `offsets.npy`) and the subset ranking key
of each record for data.seed (`keys.npy`), so that tokenization can later take any record without reading the
source again and the selection never holds the records. Every part directory appears whole (written under a
temporary name) and a killed cold start reuses the parts already written.

The selection is the one data.mix defines (max_records first, then the nested fraction subset by
(key, position)), computed with arrays: `select` gives the same records as `data.mix.select_fraction`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from data.config import SourceConfig
from data.errors import DataError, Unreachable
from data.files import temp_dir
from data.io import Part
from data.mix import rank_key, subset_size
from data.records import ChatRecord, LoadReport, PreferenceRecord
from data.sources import Record, finish_report, read_part

SCAN_VERSION = 1
SPOOL = "records.jsonl"


@dataclasses.dataclass(frozen=True)
class PartTask:
    """One part of one source to read (what a worker process gets)."""

    source_index: int
    source: SourceConfig
    part: Part | None
    on_invalid: str
    seed: int
    directory: str


def part_directory(scan_root: Path, source_index: int, part_index: int) -> Path:
    return scan_root / f"source-{source_index:03d}-part-{part_index:05d}"


def _read_summary(directory: Path) -> dict | None:
    try:
        summary = json.loads((directory / "part.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary if summary.get("version") == SCAN_VERSION else None


def scan_part(task: PartTask) -> dict:
    """Read, validate and spool one part. Returns {"report", "num_records"}, or {"error", "unreachable"} for a
    data problem (the caller raises the first one in source order, as a single reader would have)."""
    final = Path(task.directory)
    done = _read_summary(final)
    if done is not None:
        return done
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(final.parent, prefix=f".{final.name}.")
    report = LoadReport(source=task.source.path)
    offsets, keys = [0], []
    try:
        with open(tmp / SPOOL, "wb") as spool:
            for record in read_part(task.source, on_invalid=task.on_invalid, report=report, part=task.part):
                line = json.dumps(dataclasses.asdict(record), ensure_ascii=False).encode("utf-8") + b"\n"
                spool.write(line)
                offsets.append(offsets[-1] + len(line))
                keys.append(int.from_bytes(rank_key(task.seed, record.source_id), "big"))
        np.save(tmp / "offsets.npy", np.array(offsets, dtype=np.int64), allow_pickle=False)
        np.save(tmp / "keys.npy", np.array(keys, dtype=np.uint64), allow_pickle=False)
        summary = {"version": SCAN_VERSION, "report": report.as_dict(), "num_records": len(keys)}
        (tmp / "part.json").write_text(json.dumps(summary, ensure_ascii=False), encoding="utf-8")
        try:
            os.rename(tmp, final)
        except OSError:  # written meanwhile by another job reading the same source
            shutil.rmtree(tmp, ignore_errors=True)
    except DataError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        return {"error": str(exc), "unreachable": isinstance(exc, Unreachable)}
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def decode_record(line: bytes) -> Record:
    data = json.loads(line)
    if "messages" in data:
        return ChatRecord(**{**data, "messages": tuple(data["messages"])})
    return PreferenceRecord(**{**data, "prompt": tuple(data["prompt"])})


@dataclasses.dataclass
class SourceScan:
    """One source after all its parts were read: where its records are, its report, the records selected."""

    parts: list[Path]
    counts: list[int]  # records per part
    report: LoadReport
    selected: np.ndarray  # indices of the selected records among the source's records, ascending

    def locate(self, indices: np.ndarray) -> Iterator[tuple[Path, np.ndarray]]:
        """(part directory, byte offsets in its spool) of the records `indices` (ascending), part by part."""
        starts = np.cumsum([0, *self.counts])
        which = np.searchsorted(starts, indices, side="right") - 1
        for part in np.unique(which):
            local = indices[which == part] - starts[part]
            offsets = np.load(self.parts[part] / "offsets.npy", mmap_mode="r", allow_pickle=False)
            yield self.parts[part], np.asarray(offsets[local])

    def origin(self, index: int) -> str:
        (directory, (offset,)), = self.locate(np.array([index]))  # fmt: skip
        with open(directory / SPOOL, "rb") as spool:
            spool.seek(int(offset))
            return decode_record(spool.readline()).origin

    def keys(self, count: int) -> np.ndarray:
        """The ranking keys of the first `count` records."""
        keys = [np.load(d / "keys.npy", allow_pickle=False) for d in self.parts]
        return np.concatenate(keys)[:count] if keys else np.zeros(0, dtype=np.uint64)


def select(keys: np.ndarray, *, fraction: float) -> np.ndarray:
    """Indices of the records of the `fraction` subset (data.mix.select_fraction's rule: the k smallest
    (key, position)), ascending. `keys` are the big-endian integers of `data.mix.rank_key`."""
    n = len(keys)
    k = subset_size(n, fraction)
    if k == n:
        return np.arange(n, dtype=np.int64)
    order = np.lexsort((np.arange(n), keys))
    return np.sort(order[:k]).astype(np.int64)


def merge_source(source: SourceConfig, directories: list[Path], summaries: list[dict]) -> SourceScan:
    """The scan of a whole source from its parts' summaries (in order): the first data problem is raised as a
    single reader would have raised it, then max_records, the empty/no-records checks and the selection."""
    report = LoadReport(source=source.path)
    counts = []
    for summary in summaries:
        if "error" in summary:
            raise (Unreachable if summary["unreachable"] else DataError)(summary["error"])
        report.merge(LoadReport.from_dict(summary["report"]))
        counts.append(summary["num_records"])
    scan = SourceScan(directories, counts, report, np.zeros(0, dtype=np.int64))
    kept = finish_report(source, report, num_records=sum(counts), origin_of=scan.origin)
    if source.fraction < 1.0:
        scan.selected = select(scan.keys(kept), fraction=source.fraction)
    else:
        scan.selected = np.arange(kept, dtype=np.int64)
    report.num_selected = len(scan.selected)
    return scan


def mix_segments(scans: Sequence[SourceScan], indices: np.ndarray) -> list[tuple[str, np.ndarray, int]]:
    """Where the records `indices` (ascending) of the mix (the sources' selections concatenated in order) are:
    (part directory, spool byte offsets, source index), in mix order."""
    starts = np.cumsum([0, *(len(scan.selected) for scan in scans)])
    which = np.searchsorted(starts, indices, side="right") - 1
    segments = []
    for source in np.unique(which):
        scan = scans[source]
        chosen = scan.selected[indices[which == source] - starts[source]]
        for directory, offsets in scan.locate(chosen):
            segments.append((str(directory), offsets, int(source)))
    return segments


def read_segments(segments: Sequence[tuple[str, np.ndarray, int]]) -> Iterator[tuple[Record, int]]:
    """The spooled records of `segments` with their source index, in order."""
    for directory, offsets, source in segments:
        with open(Path(directory) / SPOOL, "rb") as spool:
            for offset in offsets:
                spool.seek(int(offset))
                yield decode_record(spool.readline()), source
