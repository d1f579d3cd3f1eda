"""Reading rows from a local .jsonl/.json/.parquet file or a Hugging Face hub dataset.

Local JSON is parsed here, line by line, so that every problem names its file and line; parquet and hub rows
are named by their 0-based record index ('file: record N'). A path that does not exist but looks local (a
.jsonl/.json/.parquet suffix, or starting with '.', '/' or '~') is reported as missing instead of being looked
up on the hub. File-level problems raise DataError; row-level ones travel with the row (`Row.error`) so that
the caller can apply on_invalid.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from data.errors import DataError, InvalidRecord, Unreachable, hub_offline, preview

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark (written by some Windows editors) is not content


@dataclasses.dataclass(frozen=True)
class Row:
    """One source row (a dict) and where it came from; `error` is set instead of `data` for unreadable rows."""

    origin: str
    data: dict | None
    error: InvalidRecord | None = None


def looks_local(path: str) -> bool:
    """Whether `path` is meant as a local file even if it does not exist (so never a hub id)."""
    return path.startswith((".", "/", "~")) or path.lower().endswith(LOCAL_SUFFIXES)


def read_rows(path: str, *, name: str | None = None, split: str = "train") -> Iterator[Row]:
    """Rows of a local file or a hub dataset (`name`, `split` only apply to the hub)."""
    local = Path(os.path.expanduser(path))
    if local.is_file():
        suffix = local.suffix.lower()
        if suffix == ".parquet":
            yield from _parquet_rows(local, label=path)
        elif suffix in (".jsonl", ".json"):
            yield from _json_rows(local, label=path, allow_array=suffix == ".json")
        else:
            raise DataError(
                f"{path}: unsupported file type {suffix or '(none)'!r} (expected .jsonl, .json or .parquet)"
            )
    elif local.is_dir() or not looks_local(path):
        yield from _hub_rows(path, name=name, split=split)
    else:
        raise DataError(f"{path}: file not found")


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


def _json_line_rows(lines: Iterable[bytes], *, label: str, whole: bytes | None = None) -> Iterator[Row]:
    """One row per non-blank line, numbered physically (1-based); `whole` is the file when already read."""
    seen_row = False
    for number, raw in enumerate(lines, start=1):
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
    if not seen_row:
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


def _parquet_rows(path: Path, *, label: str) -> Iterator[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{label}: not a readable parquet file ({str(exc).splitlines()[0]})") from None
    if handle.metadata.num_rows == 0:
        raise DataError(f"{label}: file is empty (0 rows)")
    index = 0
    for batch in handle.iter_batches():
        for value in batch.to_pylist():
            yield _as_row(f"{label}: record {index}", value)
            index += 1


def _hub_rows(path: str, *, name: str | None, split: str) -> Iterator[Row]:
    import datasets  # lazy: importing datasets is slow and local files do not need it

    try:
        dataset = datasets.load_dataset(path, name, split=split)
    except Exception as exc:  # noqa: BLE001 - any failure here is "could not load this source"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        error = Unreachable if hub_offline() else DataError  # offline, a hub dataset cannot be told apart
        raise error(f"{path}: could not load dataset (name={name}, split={split}): {first}") from exc
    if len(dataset) == 0:
        raise DataError(f"{path}: split {split!r} has no rows")
    for index, value in enumerate(dataset):
        yield _as_row(f"{path}: record {index}", value)
