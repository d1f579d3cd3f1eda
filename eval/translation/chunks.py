"""The distributed loop: chunks of records dealt to ranks round by round, rows appended as they finish."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from data.text import format_duration
from data.translate.items import Item
from eval.generate import append_rows, read_done, rewrite_rows
from runtime.distributed import all_gather_objects, broadcast_object, rank, world_size
from runtime.faults import kill_after_round

logger = logging.getLogger("sisu")


def progress_line(done: int, total: int, *, new: int, segments: int, elapsed: float) -> str:
    """`translate: [#####-----] 12/40 items (30%), 0.85 items/s, 14.2 segments/s, eta 33s` (rank 0)."""
    width = 20
    filled = int(width * done / total) if total else width
    rate = new / elapsed if elapsed > 0 else 0.0
    eta = format_duration((total - done) / rate) if rate > 0 else "?"
    return (
        f"translate: [{'#' * filled}{'-' * (width - filled)}] {done}/{total} items "
        f"({100 * done / max(total, 1):.0f}%), {rate:.3g} items/s, "
        f"{segments / elapsed if elapsed > 0 else 0.0:.3g} segments/s, eta {eta}"
    )


def run_chunks(
    items: Sequence[Item],
    *,
    work: Callable[[list[Item]], list[dict]],
    progress_path: Path,
    items_per_chunk: int,
) -> None:
    """Apply `work` to every chunk of items not yet in `progress_path`, appending its rows (all ranks call)."""
    rank_, world = rank(), world_size()
    done_keys: list[str] = []
    if rank_ == 0:
        done_rows = read_done(progress_path)
        if progress_path.exists():
            rewrite_rows(progress_path, list(done_rows.values()))  # drop a line cut by a kill
        done_keys = sorted(done_rows)
    done = set(broadcast_object(done_keys, src=0))
    chunks = [list(items[i : i + items_per_chunk]) for i in range(0, len(items), items_per_chunk)]
    pending = [chunk for chunk in ([it for it in c if it.key not in done] for c in chunks) if chunk]
    finished = len(items) - sum(len(chunk) for chunk in pending)
    if rank_ == 0:
        if finished:
            logger.info(
                "translate: %d of %d items already in %s; continuing", finished, len(items), progress_path
            )
        logger.info(
            "translate: %d items to do in %d chunks of <= %d over %d rank(s)",
            len(items) - finished,
            len(pending),
            items_per_chunk,
            world,
        )
    start, new, segments = time.perf_counter(), 0, 0
    for round_index in range(-(-len(pending) // world)):
        mine = round_index * world + rank_
        rows = work(pending[mine] if mine < len(pending) else [])  # every rank, every round (lockstep models)
        gathered = all_gather_objects(rows)
        if rank_ == 0:
            new_rows = [row for part in gathered for row in part]
            append_rows(progress_path, new_rows)
            new += len(new_rows)
            segments += sum(row["segments"] for row in new_rows)
            elapsed = time.perf_counter() - start
            logger.info(
                "%s", progress_line(finished + new, len(items), new=new, segments=segments, elapsed=elapsed)
            )
        kill_after_round(round_index + 1)  # test hook (runtime/faults.py)
