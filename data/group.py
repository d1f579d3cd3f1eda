"""How the ranks of a job share long data work without any of them waiting in a collective for long.

The data layer knows nothing of torch.distributed: a job hands it a `Group` (the trainer's is built on
runtime/distributed.py, the one module that issues collectives; a single process uses `LOCAL`). `run_together`
runs this rank's share of some work (items with a global order: source parts, tokenization shards) in a
background thread, or in a pool of worker processes, while the calling thread meets the other ranks every
`poll` seconds in two tiny all-reduces: how much is done, whether everyone is finished, and the lowest item that
failed anywhere. No rank ever sits in a collective while another works, so a cold start of any length never hits
the process group's timeout, and rank 0 prints progress (done/total, rate, ETA) from the sums.

Errors are deterministic: after a failure, items of a higher index are not started anywhere, items of a lower
index still run, and every rank raises the error of the lowest failing item; for a data problem (DataError) that
is the same one line on every rank, as a single process would have raised it. Anything else (a bug) keeps its
traceback on the rank where it happened; the others raise a RuntimeError that points to it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from data.errors import DataError
from data.text import format_duration

logger = logging.getLogger("sisu")
PROGRESS_EVERY = 30.0  # seconds between progress lines on rank 0
NO_FAILURE = 2**52  # above any item index; exact through a float64 all-reduce


class Group(Protocol):
    """The ranks of a job as the data layer sees them."""

    rank: int
    world_size: int
    timeout_seconds: float | None  # of the process group's collectives (None: no limit, one process)

    def all_reduce(self, values: Sequence[int], *, op: str = "sum") -> list[int]: ...

    def all_gather(self, obj: Any) -> list[Any]: ...


@dataclasses.dataclass(frozen=True)
class LocalGroup:
    """One process: every collective is the identity."""

    rank: int = 0
    world_size: int = 1
    timeout_seconds: float | None = None

    def all_reduce(self, values: Sequence[int], *, op: str = "sum") -> list[int]:
        return [int(v) for v in values]

    def all_gather(self, obj: Any) -> list[Any]:
        return [obj]


LOCAL = LocalGroup()


@dataclasses.dataclass(frozen=True)
class Item:
    """One piece of work: `index` orders it among all ranks' items, `units` is its size for progress (records),
    `payload` is what `run_item` gets."""

    index: int
    units: int
    payload: Any


def poll_seconds(group: Group) -> float:
    """How often the ranks meet: once a second, or more often under a short process-group timeout."""
    if group.timeout_seconds is None:
        return 1.0
    return max(0.01, min(1.0, group.timeout_seconds / 10))


class _Shared:
    """What the work thread and the polling thread share."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.units_done = 0
        self.local_failure = NO_FAILURE  # lowest failing item on this rank
        self.global_failure = NO_FAILURE  # lowest failing item anywhere, as of the last meeting
        self.results: dict[int, Any] = {}
        self.errors: dict[int, BaseException] = {}

    def skip(self, index: int) -> bool:
        with self.lock:
            return index > min(self.global_failure, self.local_failure)

    def finish(self, item: Item, result: Any = None, error: BaseException | None = None) -> None:
        with self.lock:
            self.units_done += item.units
            if error is None:
                self.results[item.index] = result
            else:
                self.errors[item.index] = error
                self.local_failure = min(self.local_failure, item.index)


def _run_items(
    items: Sequence[Item],
    run_item: Callable[[Any], Any],
    shared: _Shared,
    *,
    num_workers: int,
    initializer: Callable[..., None] | None,
    initargs: tuple,
) -> None:
    """This rank's items in index order: in this thread (one worker) or in a pool of processes. A failure outside
    any item (the pool could not start) counts as a failure of the first item not yet done."""
    ordered = sorted(items, key=lambda item: item.index)
    try:
        if num_workers <= 1 or len(ordered) <= 1:
            if initializer is not None:
                initializer(*initargs)
            for item in ordered:
                if not shared.skip(item.index):
                    try:
                        shared.finish(item, run_item(item.payload))
                    except BaseException as exc:  # noqa: BLE001 - handed to the polling thread, re-raised there
                        shared.finish(item, error=exc)
        else:
            context = multiprocessing.get_context("spawn")
            workers = min(num_workers, len(ordered))
            with concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=context, initializer=initializer, initargs=initargs
            ) as pool:
                _run_in_pool(pool, ordered, run_item, shared, workers)
    except BaseException as exc:  # noqa: BLE001 - handed to the polling thread, re-raised there
        done = shared.results.keys() | shared.errors.keys()
        todo = [item for item in ordered if item.index not in done]
        shared.finish(todo[0] if todo else ordered[0], error=exc)


def _run_in_pool(pool: Any, ordered: list[Item], run_item: Callable, shared: _Shared, workers: int) -> None:
    """Submit in index order, a few at a time, so that items after a failure are not started (see skip)."""
    pending: dict[concurrent.futures.Future, Item] = {}
    queue = list(ordered)
    while queue or pending:
        while queue and len(pending) < workers:
            item = queue.pop(0)
            if not shared.skip(item.index):
                pending[pool.submit(run_item, item.payload)] = item
        if not pending:
            continue
        finished, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
        for future in finished:
            item = pending.pop(future)
            error = future.exception()
            shared.finish(item, None if error else future.result(), error)


def run_together(
    group: Group,
    items: Sequence[Item],
    run_item: Callable[[Any], Any],
    *,
    total_units: int,
    what: str,
    unit: str = "records",
    num_workers: int = 1,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
) -> dict[int, Any]:
    """Run this rank's `items` (run_item(item.payload) each) while meeting the other ranks every poll; returns
    {item index: result} of this rank's items once every rank has finished its own. `total_units` is the size
    of all ranks' items together (for progress); `what` names the work in progress lines and errors."""
    shared = _Shared()
    worker = threading.Thread(
        target=_run_items,
        args=(items, run_item, shared),
        kwargs={"num_workers": num_workers, "initializer": initializer, "initargs": initargs},
        name=f"sisu-{what}",
        daemon=True,
    )
    poll = poll_seconds(group)
    started = last_report = time.monotonic()
    worker.start()
    while True:
        worker.join(timeout=poll)
        finished = not worker.is_alive()
        with shared.lock:
            done, local_failure = shared.units_done, shared.local_failure
        done_all, finished_all = group.all_reduce([done, int(finished)], op="sum")
        (lowest,) = group.all_reduce([local_failure], op="min")
        with shared.lock:
            shared.global_failure = lowest
        now = time.monotonic()
        if finished_all == group.world_size:
            break
        if group.rank == 0 and now - last_report >= PROGRESS_EVERY:
            last_report = now
            rate = done_all / max(now - started, 1e-9)
            eta = f", ETA {format_duration((total_units - done_all) / rate)}" if rate > 0 else ""
            logger.info(
                "%s: %d/%d %s (%.0f%%), %.0f %s/s%s",
                what,
                done_all,
                total_units,
                unit,
                100 * done_all / max(total_units, 1),
                rate,
                unit,
                eta,
            )
    elapsed = time.monotonic() - started
    logger.debug(
        "%s: rank %d did %d of the %d %s (%d items) in %.1fs",
        what, group.rank, shared.units_done, total_units, unit, len(items), elapsed,
    )  # fmt: skip
    _raise_lowest_failure(group, shared.errors, what=what)
    if group.rank == 0 and total_units and elapsed >= 1.0:
        logger.info(
            "%s: %d %s in %s (%.0f %s/s) on %d rank(s) x %d worker(s)",
            what,
            total_units,
            unit,
            format_duration(elapsed),
            total_units / elapsed,
            unit,
            group.world_size,
            num_workers,
        )
    return shared.results


def _raise_lowest_failure(group: Group, errors: dict[int, BaseException], *, what: str) -> None:
    """Raise, on every rank, the error of the lowest failing item of all ranks (see the module docstring)."""
    mine = min(errors) if errors else NO_FAILURE
    summary = None
    if errors:
        error = errors[mine]
        summary = (mine, str(error) if isinstance(error, DataError) else None, type(error).__name__)
    gathered = group.all_gather(summary)
    failed = [(report[0], rank) for rank, report in enumerate(gathered) if report is not None]
    if not failed:
        return
    _, owner = min(failed)
    if owner == group.rank:
        raise errors[mine]
    _, message, kind = gathered[owner]
    if message is not None:
        raise DataError(message)
    raise RuntimeError(f"{what} failed on rank {owner} with {kind} (its traceback is in that rank's output)")
