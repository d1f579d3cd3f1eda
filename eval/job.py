"""The start and end of a generation job (eval, translate, make_pairs): one process group per job, logging and
seeds on every rank, the output folder with the job's config (and its settings file) written by rank 0, and the
process group destroyed however the job ends."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from eval.record import write_record
from runtime.config import write_config
from runtime.distributed import DistInfo, init_distributed, seed_everything, setup_logging, teardown
from runtime.lock import hold


@contextlib.contextmanager
def generation_job(cfg: Any, out: Path, *, record: dict | None = None) -> Iterator[DistInfo]:
    """Run the body on a started process group. `cfg` has `seed` and `distributed`; `record` is the run record
    (eval/record.py) a re-run must match, written as run.json beside config.yaml."""
    info = init_distributed(backend=cfg.distributed.backend, timeout_minutes=cfg.distributed.timeout_minutes)
    try:
        setup_logging(rank=info.rank)
        seed_everything(cfg.seed)
        with hold(out, is_main=info.is_main):  # one job per output_dir (runtime/lock.py)
            if info.is_main:
                write_config(cfg, out / "config.yaml")
                if record is not None:
                    write_record(out, record)
            yield info
    finally:
        teardown()
