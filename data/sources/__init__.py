"""Sources: rows of a local file or hub dataset -> validated ChatRecords / PreferenceRecords.

`load_source` reads one SourceConfig with the parser of its `format`, applies cfg.lang (per format) and
cfg.max_records, and reports what it read and left out. cfg.fraction is applied later, by data.mix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from data.config import SourceConfig
from data.errors import DataError
from data.io import Row, read_rows
from data.records import ChatRecord, LoadReport, PreferenceRecord
from data.sources import helpsteer2, language_contrast, messages, oasst_tree, preference

Record = ChatRecord | PreferenceRecord

LOADERS: dict[str, Callable[..., list]] = {
    "messages": messages.load,
    "oasst_tree": oasst_tree.load,
    "helpsteer2": helpsteer2.load,
    "preference": preference.load,
    "language_contrast": language_contrast.load,
}
CHAT_FORMATS = ("messages", "oasst_tree")
PREFERENCE_FORMATS = ("helpsteer2", "preference", "language_contrast")
ON_INVALID = ("error", "skip")


def _counted(rows: Iterator[Row], report: LoadReport) -> Iterator[Row]:
    for row in rows:
        report.num_rows += 1
        yield row


def load_source(cfg: SourceConfig, *, on_invalid: str = "error") -> tuple[list[Record], LoadReport]:
    """Records of one source and its LoadReport.

    on_invalid="error" raises DataError at the first invalid row; "skip" counts invalid rows by reason in
    `report.skipped`. File-level problems (missing or empty file, unreadable dataset) and a source that yields no
    record at all raise DataError either way. With cfg.max_records, the whole source is still read and
    validated; the first max_records records are kept and the rest counted as `beyond_max_records`.
    """
    if on_invalid not in ON_INVALID:
        raise ValueError(f"on_invalid must be one of {ON_INVALID}, got {on_invalid!r}")
    loader = LOADERS.get(cfg.format)
    if loader is None:
        raise DataError(f"{cfg.path}: unknown format {cfg.format!r} (expected {', '.join(LOADERS)})")
    report = LoadReport(source=cfg.path)
    rows = _counted(read_rows(cfg.path, name=cfg.name, split=cfg.split), report)
    records = loader(rows, cfg=cfg, report=report, on_invalid=on_invalid)
    if cfg.max_records is not None and len(records) > cfg.max_records:
        report.drop(
            "beyond_max_records", records[cfg.max_records].origin, count=len(records) - cfg.max_records
        )
        records = records[: cfg.max_records]
    report.num_records = len(records)
    if not records:
        left_out = f" (left out: {report.describe_skips()})" if report.skipped else ""
        raise DataError(f"{cfg.path}: no usable records in {report.num_rows} rows{left_out}")
    return records, report


__all__ = ["CHAT_FORMATS", "PREFERENCE_FORMATS", "LOADERS", "Record", "load_source"]
