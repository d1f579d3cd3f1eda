"""Reading rows from a local .jsonl/.json/.parquet file or a Hugging Face hub dataset, whole or in parts.

Local JSON is parsed here, line by line, so that every problem names its file and line; parquet and hub rows
are named by their 0-based record index ('file: record N'). A path that does not exist but looks local (a
.jsonl/.json/.parquet suffix, or starting with '.', '/' or '~') is reported as missing instead of being looked
up on the hub. File-level problems raise DataError; row-level ones travel with the row (`Row.error`) so that
the caller can apply on_invalid.

Large sources are read in parts by several processes (data/scan.py): a JSON lines file in blocks of
`BLOCK_BYTES` (a part holds the lines that start inside its block; `describe_block` counts the newlines before
it, so line numbers stay those of the whole file), parquet files and hub datasets in ranges of `PART_ROWS` rows.
`describe_block` also hashes the block: the digests of all blocks are the source's content fingerprint, the
tokenization cache's key (data/build.py), computed without parsing a row.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from data.errors import DataError, InvalidRecord, Unreachable, hub_offline, preview

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark (written by some Windows editors) is not content
BLOCK_BYTES = 16 << 20  # JSON lines files are hashed and scanned in blocks of this many bytes
PART_ROWS = 50_000  # parquet files and hub datasets are scanned in ranges of this many rows


@dataclasses.dataclass(frozen=True)
class Row:
    """One source row (a dict) and where it came from; `error` is set instead of `data` for unreadable rows."""

    origin: str
    data: dict | None
    error: InvalidRecord | None = None


def looks_local(path: str) -> bool:
    """Whether `path` is meant as a local file even if it does not exist (so never a hub id)."""
    return path.startswith((".", "/", "~")) or path.lower().endswith(LOCAL_SUFFIXES)


def source_kind(path: str) -> str:
    """How `path` is read: "jsonl", "json", "parquet" (local files) or "hub" (an id, or a local dataset
    directory); DataError for a missing local file or an unsupported suffix."""
    local = Path(os.path.expanduser(path))
    if local.is_file():
        suffix = local.suffix.lower()
        if suffix in (".jsonl", ".json", ".parquet"):
            return suffix[1:]
        raise DataError(
            f"{path}: unsupported file type {suffix or '(none)'!r} (expected .jsonl, .json or .parquet)"
        )
    if local.is_dir() or not looks_local(path):
        return "hub"
    raise DataError(f"{path}: file not found")


@dataclasses.dataclass(frozen=True)
class Part:
    """Which rows of a source a reader takes: the lines starting in bytes [start, stop) of a JSON lines file
    (`lines_before`: the newlines before `start`), or rows [start, stop) of a parquet file or hub dataset."""

    index: int
    start: int
    stop: int
    lines_before: int = 0


def read_rows(
    path: str, *, name: str | None = None, split: str = "train", part: Part | None = None
) -> Iterator[Row]:
    """Rows of a local file or a hub dataset (`name`, `split` only apply to the hub); with `part`, only that
    part's rows (an empty part yields nothing; whether the whole source is empty is the caller's check)."""
    kind = source_kind(path)
    local = Path(os.path.expanduser(path))
    if kind == "parquet":
        yield from _parquet_rows(local, label=path, part=part)
    elif kind == "jsonl" and part is not None:
        yield from _json_line_part(local, label=path, part=part)
    elif kind in ("jsonl", "json"):
        yield from _json_rows(local, label=path, allow_array=kind == "json")
    else:
        yield from _hub_rows(path, name=name, split=split, part=part)


# --- content fingerprints and parts ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Block:
    """One block of a source's content: its digest and what a part reader needs (newlines in the block, or the
    number of rows of a parquet file or hub dataset)."""

    digest: str
    size: int  # bytes (local files) or rows (hub)
    newlines: int = 0
    rows: int = 0


def num_blocks(path: str) -> int:
    """How many blocks `describe_block` hashes for this source: one per BLOCK_BYTES of a local file (one for an
    empty file), one for a hub dataset."""
    if source_kind(path) == "hub":
        return 1
    return max(1, -(-os.path.getsize(os.path.expanduser(path)) // BLOCK_BYTES))


def describe_block(path: str, index: int, *, name: str | None = None, split: str = "train") -> Block:
    """Block `index` of the source: sha256 of its bytes and its newline count (local files; the last block of a
    parquet file also carries the file's row count), or the dataset's own fingerprint and row count (hub)."""
    kind = source_kind(path)
    if kind == "hub":
        dataset = _load_hub(path, name=name, split=split)
        fingerprint = getattr(dataset, "_fingerprint", None)
        if fingerprint is None:  # not an Arrow dataset (a stand-in): hash its rows
            digest = hashlib.sha256()
            for value in dataset:
                digest.update(json.dumps(value, sort_keys=True, default=str).encode())
            fingerprint = digest.hexdigest()
        return Block(f"datasets:{fingerprint}", len(dataset), rows=len(dataset))
    local = Path(os.path.expanduser(path))
    with local.open("rb") as handle:
        handle.seek(index * BLOCK_BYTES)
        data = handle.read(BLOCK_BYTES)
    rows = 0
    if kind == "parquet" and index == num_blocks(path) - 1:
        rows = _parquet_file(local, label=path).metadata.num_rows
    return Block(hashlib.sha256(data).hexdigest(), len(data), newlines=data.count(b"\n"), rows=rows)


def source_parts(path: str, blocks: list[Block], *, splittable: bool) -> list[Part | None]:
    """The parts a source is scanned in: [None] (the whole source, one reader) unless `splittable` (a format
    with one record per row) and the source is a JSON lines file (one part per block), a parquet file or a hub
    dataset (PART_ROWS rows each)."""
    kind = source_kind(path)
    if not splittable or kind == "json":
        return [None]
    if kind == "jsonl":
        parts, lines = [], 0
        for i, block in enumerate(blocks):
            parts.append(Part(i, i * BLOCK_BYTES, i * BLOCK_BYTES + block.size, lines_before=lines))
            lines += block.newlines
        return parts
    rows = blocks[-1].rows
    return [
        Part(i, start, min(rows, start + PART_ROWS)) for i, start in enumerate(range(0, rows, PART_ROWS))
    ] or [None]


def _as_row(origin: str, value: Any) -> Row:
    if isinstance(value, dict):
        return Row(origin, value)
    problem = f"a row must be a JSON object, got {type(value).__name__} {preview(value)}"
    return Row(origin, None, InvalidRecord(origin, "wrong_type", problem))


def _json_rows(path: Path, *, label: str, allow_array: bool) -> Iterator[Row]:
    if allow_array:
        # A .json file may be one array (parsed whole) or JSON lines; it has to be looked at first.
        data = path.read_bytes().removeprefix(BOM)
        if not data.strip():
            raise DataError(f"{label}: file is empty")
        if data.lstrip().startswith(b"["):
            yield from _json_array_rows(data, label=label)
            return
        yield from _json_line_rows(data.split(b"\n"), label=label, whole=data)
        return
    with path.open("rb") as handle:  # streamed: JSON lines files can be large
        yield from _json_line_rows(handle, label=label)


def _json_line_part(path: Path, *, label: str, part: Part) -> Iterator[Row]:
    """The rows of the lines that start in bytes [part.start, part.stop), numbered as in the whole file."""
    with path.open("rb") as handle:
        start = part.start
        lines_before = part.lines_before
        if start > 0:  # the line that runs into the block belongs to the part before
            handle.seek(start - 1)
            if handle.read(1) != b"\n":
                handle.readline()
                lines_before += 1
                start = handle.tell()
        if start >= part.stop:
            return

        def lines() -> Iterator[bytes]:
            position = start
            while position < part.stop:
                line = handle.readline()
                if not line:
                    return
                position += len(line)
                yield line

        handle.seek(start)
        yield from _json_line_rows(lines(), label=label, first_number=lines_before + 1, require_rows=False)


def _json_line_rows(
    lines: Iterable[bytes],
    *,
    label: str,
    whole: bytes | None = None,
    first_number: int = 1,
    require_rows: bool = True,
) -> Iterator[Row]:
    """One row per non-blank line, numbered physically (1-based, the first line numbered `first_number`);
    `whole` is the file when already read. `require_rows`: a file without a row is an error."""
    seen_row = False
    for number, raw in enumerate(lines, start=first_number):
        if number == 1:
            raw = raw.removeprefix(BOM)
        if not raw.strip():
            continue  # blank lines (e.g. a trailing newline) hold no row
        seen_row = True
        origin = f"{label}:{number}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem = f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line)"
            yield Row(origin, None, InvalidRecord(origin, "not_utf8", problem))
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            if whole is not None and number == 1 and _whole_file_is_object(whole):
                raise DataError(
                    f"{label}: holds a single JSON object; expected a JSON array of rows or one object per line"
                ) from None
            problem = f"malformed JSON ({exc.msg} at column {exc.colno})"
            yield Row(origin, None, InvalidRecord(origin, "malformed_json", problem))
            continue
        yield _as_row(origin, value)
    if require_rows and not seen_row:
        raise DataError(f"{label}: file is empty")


def _whole_file_is_object(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data), dict)
    except (ValueError, UnicodeDecodeError):
        return False


def _json_array_rows(data: bytes, *, label: str) -> Iterator[Row]:
    """Elements of a JSON array, each named by the line where it starts. Any syntax error is file-level
    (the parser cannot resynchronise inside an array)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{label}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x})") from None
    decoder = json.JSONDecoder()
    ws = " \t\r\n"

    def fail(pos: int, problem: str) -> DataError:
        return DataError(f"{label}:{text.count(chr(10), 0, pos) + 1}: malformed JSON ({problem})")

    pos = len(text) - len(text.lstrip(ws)) + 1  # just after "["
    count = 0
    while True:
        while pos < len(text) and text[pos] in ws:
            pos += 1
        if pos < len(text) and text[pos] == "]" and count == 0:
            pos += 1
            break
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise fail(exc.pos, exc.msg) from None
        count += 1
        yield _as_row(f"{label}:{text.count(chr(10), 0, pos) + 1}", value)
        pos = end
        while pos < len(text) and text[pos] in ws:
            pos += 1
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        if pos < len(text) and text[pos] == "]":
            pos += 1
            break
        raise fail(pos, "expected ',' or ']' after an array element")
    if text[pos:].strip(ws):
        raise fail(pos, "extra data after the array")
    if count == 0:
        raise DataError(f"{label}: file holds an empty array (no rows)")


def _parquet_file(path: Path, *, label: str) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{label}: not a readable parquet file ({str(exc).splitlines()[0]})") from None


def _parquet_rows(path: Path, *, label: str, part: Part | None = None) -> Iterator[Row]:
    handle = _parquet_file(path, label=label)
    if handle.metadata.num_rows == 0:
        raise DataError(f"{label}: file is empty (0 rows)")
    start, stop = (0, handle.metadata.num_rows) if part is None else (part.start, part.stop)
    first = 0  # index of the first row of the current row group
    for group in range(handle.metadata.num_row_groups):
        size = handle.metadata.row_group(group).num_rows
        if first + size > start and first < stop:
            values = handle.read_row_group(group).to_pylist()
            for index in range(max(start, first), min(stop, first + size)):
                yield _as_row(f"{label}: record {index}", values[index - first])
        first += size


def _load_hub(path: str, *, name: str | None, split: str) -> Any:
    import datasets  # lazy: importing datasets is slow and local files do not need it

    try:
        dataset = datasets.load_dataset(path, name, split=split)
    except Exception as exc:  # noqa: BLE001 - any failure here is "could not load this source"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        error = Unreachable if hub_offline() else DataError  # offline, a hub dataset cannot be told apart
        raise error(f"{path}: could not load dataset (name={name}, split={split}): {first}") from exc
    if len(dataset) == 0:
        raise DataError(f"{path}: split {split!r} has no rows")
    return dataset


def _hub_rows(path: str, *, name: str | None, split: str, part: Part | None = None) -> Iterator[Row]:
    dataset = _load_hub(path, name=name, split=split)
    start, stop = (0, len(dataset)) if part is None else (part.start, part.stop)
    if (start, stop) == (0, len(dataset)):
        rows = dataset
    elif hasattr(dataset, "select"):  # an Arrow dataset: a view of the range, read lazily
        rows = dataset.select(range(start, stop))
    else:
        rows = (dataset[i] for i in range(start, stop))
    for index, value in enumerate(rows, start=start):
        yield _as_row(f"{path}: record {index}", value)
