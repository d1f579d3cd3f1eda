"""Sources: rows of a local file or hub dataset -> validated ChatRecords / PreferenceRecords.

`load_source` reads one SourceConfig with the parser of its `format`, applies cfg.lang (per format) and
cfg.max_records, and reports what it read and left out. cfg.fraction is applied later, by data.mix. The
training data path reads large sources in parts instead (`read_part`, data/scan.py), as records stream by,
and finishes the merged report with the same rule (`finish_report`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from data.config import SourceConfig
from data.errors import ConfigError, DataError
from data.io import Part, Row, read_rows
from data.records import ChatRecord, LoadReport, PreferenceRecord
from data.sources import helpsteer2, language_contrast, messages, oasst_tree, preference

Record = ChatRecord | PreferenceRecord

LOADERS: dict[str, Callable[..., Iterator]] = {
    "messages": messages.load,
    "oasst_tree": oasst_tree.load,
    "helpsteer2": helpsteer2.load,
    "preference": preference.load,
    "language_contrast": language_contrast.load,
}
CHAT_FORMATS = ("messages", "oasst_tree")
PREFERENCE_FORMATS = ("helpsteer2", "preference", "language_contrast")
# One record per row: any range of rows can be read on its own. (oasst_tree rebuilds trees from messages all
# over the file and helpsteer2 pairs neighbouring rows: those are read whole, by one process.)
SPLITTABLE_FORMATS = ("messages", "preference", "language_contrast")
ON_INVALID = ("error", "skip")


def _counted(rows: Iterator[Row], report: LoadReport) -> Iterator[Row]:
    for row in rows:
        report.num_rows += 1
        yield row


def check_source(cfg: SourceConfig, *, on_invalid: str) -> None:
    """The format and on_invalid policy exist (a DataError / ValueError otherwise)."""
    if on_invalid not in ON_INVALID:
        raise ConfigError(f"on_invalid must be one of {ON_INVALID}, got {on_invalid!r}")
    if cfg.format not in LOADERS:
        raise DataError(f"{cfg.path}: unknown format {cfg.format!r} (expected {', '.join(LOADERS)})")


def read_part(
    cfg: SourceConfig, *, on_invalid: str, report: LoadReport, part: Part | None
) -> Iterator[Record]:
    """The records of one part of a source (None: the whole source), as they are read; rows and skips are
    counted in `report`."""
    check_source(cfg, on_invalid=on_invalid)
    rows = _counted(read_rows(cfg.path, name=cfg.name, split=cfg.split, part=part), report)
    return LOADERS[cfg.format](rows, cfg=cfg, report=report, on_invalid=on_invalid)


def finish_report(
    cfg: SourceConfig, report: LoadReport, *, num_records: int, origin_of: Callable[[int], str]
) -> int:
    """Apply cfg.max_records to the `num_records` records a whole source gave (`origin_of(i)`: where record i
    is) and check that something is left; returns the number of records kept (also `report.num_records`)."""
    if report.num_rows == 0:  # a source read in parts (a whole read raises this itself)
        raise DataError(f"{cfg.path}: file is empty")
    if cfg.max_records is not None and num_records > cfg.max_records:
        report.drop("beyond_max_records", origin_of(cfg.max_records), count=num_records - cfg.max_records)
        num_records = cfg.max_records
    report.num_records = num_records
    if not num_records:
        left_out = f" (left out: {report.describe_skips()})" if report.skipped else ""
        raise DataError(f"{cfg.path}: no usable records in {report.num_rows} rows{left_out}")
    return num_records


def load_source(cfg: SourceConfig, *, on_invalid: str = "error") -> tuple[list[Record], LoadReport]:
    """Records of one source and its LoadReport.

    on_invalid="error" raises DataError at the first invalid row; "skip" counts invalid rows by reason in
    `report.skipped`. File-level problems (missing or empty file, unreadable dataset) and a source that yields no
    record at all raise DataError either way. With cfg.max_records, the whole source is still read and
    validated; the first max_records records are kept and the rest counted as `beyond_max_records`.
    """
    report = LoadReport(source=cfg.path)
    records = list(read_part(cfg, on_invalid=on_invalid, report=report, part=None))
    kept = finish_report(cfg, report, num_records=len(records), origin_of=lambda i: records[i].origin)
    return records[:kept], report


__all__ = [
    "CHAT_FORMATS",
    "PREFERENCE_FORMATS",
    "SPLITTABLE_FORMATS",
    "LOADERS",
    "Record",
    "check_source",
    "finish_report",
    "load_source",
    "read_part",
]
