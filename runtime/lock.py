"""One job per output directory: a lock file rank 0 holds while the job runs.

Two jobs writing into one `output_dir` interleave their metrics rows and delete each other's checkpoints in the
making. Every job (training and generation) takes `OUTPUT_DIR/.sisu.lock` when it starts (created exclusively,
with the holder's host, pid, start time and SLURM job id) and removes it when it ends, however it ends. A second
job finds the lock and stops with one line naming the holder; a lock whose holder is gone (the same host, no such
process: a job killed with -9), or one left by an earlier attempt of the same job (torchrun restarted the group, or
SLURM requeued the job; rank 0 may now be on another node) is stale: it is reported with a warning and taken over.
Any other lock from another host cannot be checked from here: the line says to delete it when no job runs there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from data.errors import SisuError
from runtime.distributed import all_gather_objects

logger = logging.getLogger("sisu")
LOCK = ".sisu.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _attempt() -> int:
    """Which attempt of its job this process is: torchrun's restarts plus SLURM's requeues."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT") or 0) + int(
        os.environ.get("SLURM_RESTART_COUNT") or 0
    )


def _earlier_attempt_of_this_job(holder: dict, me: dict) -> bool:
    """A lock left by an earlier attempt of this very job (a restarted torchrun group or a requeued SLURM job,
    whose rank 0 may now run on another node): its holder is gone, since the attempt was restarted."""
    same_job = (me["slurm_job"] is not None and holder.get("slurm_job") == me["slurm_job"]) or (
        me["elastic_run"] not in (None, "", "none") and holder.get("elastic_run") == me["elastic_run"]
    )
    return same_job and isinstance(holder.get("attempt"), int) and holder["attempt"] < me["attempt"]


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # being written this very moment, or damaged: treat as held


def acquire(directory: Path) -> Path:
    """Take the lock of `directory` for this process (SisuError when another live job holds it)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK
    me = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "slurm_job": os.environ.get("SLURM_JOB_ID"),
        "command": " ".join(sys.argv[:3]),
        "elastic_run": os.environ.get("TORCHELASTIC_RUN_ID"),
        "attempt": _attempt(),
    }
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            holder = _holder(path)
            gone = (
                holder.get("host") == me["host"]
                and isinstance(holder.get("pid"), int)
                and not _alive(holder["pid"])
            )
            if gone or _earlier_attempt_of_this_job(holder, me):
                logger.warning(
                    "%s: removing the stale lock of a job that is gone (pid %s on %s, started %s%s)",
                    path, holder.get("pid"), holder.get("host"), holder.get("started"),
                    "" if gone else ", an earlier attempt of this job",
                )  # fmt: skip
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}" + (
                f", SLURM job {holder['slurm_job']}" if holder.get("slurm_job") else ""
            )
            raise SisuError(
                f"{directory} is in use by another job ({who}, started {holder.get('started', '?')}): wait for it, "
                f"use another output_dir, or delete {path} if no job runs there"
            ) from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(me, handle)
        return path
    raise SisuError(f"{path}: could not take the lock (it keeps coming back); delete it if no job runs there")


def release(path: Path) -> None:
    """Remove the lock if this process holds it."""
    holder = _holder(path)
    if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def hold(directory: Path, *, is_main: bool) -> Iterator[None]:
    """All ranks: rank 0 takes the lock of `directory` for the body; a refusal reaches every rank as its line."""
    path, problem = None, None
    if is_main:
        try:
            path = acquire(directory)
        except SisuError as exc:
            problem = str(exc)
    problems = [p for p in all_gather_objects(problem) if p is not None]
    if problems:
        raise SisuError(problems[0])
    try:
        yield
    finally:
        if path is not None:
            release(path)
