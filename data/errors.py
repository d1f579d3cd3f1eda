"""The refusals sisu writes, and those of the data layer: one line each.

Every error sisu raises on purpose, because what it was given (a config, data, a file, a checkpoint, the launch
environment) is not something it can run, is a `SisuError`. The job front end (runtime/cli.py) prints those as one
line and exits with their `exit_code` (2); anything else is a bug and keeps its traceback (exit 1). The base
lives here, in the lowest layer that refuses anything, so that every layer above can raise it. Data errors name
the file and the line (or record index) at fault.
"""

from __future__ import annotations


class SisuError(ValueError):
    """A refusal: one line for the user (no traceback), exit status `exit_code`."""

    exit_code = 2


class ConfigError(SisuError):
    """A setting is wrong: a config file, an override, a command-line option or their combination."""


class DataError(SisuError):
    """One-line user error: '<file>:<line>: <problem>' (or '<file>: record N: ...' for parquet/hub)."""


class Unreachable(DataError):
    """A hub dataset or model that cannot be reached from here (offline and not in the local cache). The only
    failure a --dry-run reports as a note instead of an error: the run itself, on a node that can reach it or
    after a download, may well succeed."""


def hub_offline() -> bool:
    """Whether the Hugging Face hub is off limits (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE)."""
    import os

    return "1" in (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("HF_DATASETS_OFFLINE"))


class InvalidRecord(DataError):
    """A problem confined to one row or record: fatal with on_invalid=error, a counted skip with skip.

    `reason` is a short snake_case key (e.g. `malformed_json`, `unknown_role`) under which skips are counted;
    `origin` is the row's location ('file:line' or 'file: record N').
    """

    def __init__(self, origin: str, reason: str, problem: str) -> None:
        super().__init__(f"{origin}: {problem}")
        self.origin = origin
        self.reason = reason
        self.problem = problem

    def __reduce__(self):  # keep the exception picklable (worker processes) despite the custom __init__
        return (type(self), (self.origin, self.reason, self.problem))


def preview(value: object, *, limit: int = 60) -> str:
    """Short one-line repr of a user value for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
