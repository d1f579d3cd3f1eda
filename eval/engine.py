"""One resumable engine for every generation job (eval, translate, make_pairs): units dealt to ranks in rounds.

The caller cuts its items into units (a batch of prompts, a chunk of records) from all items, done or not, so the
units are the same for any number of ranks and after a restart. Rank 0 reads the rows already written (a line cut
by a kill is dropped) and every rank learns their keys; a unit with any key not done is done again whole (the same
batch, so the same padding and the same sampling seed: the same rows as an uninterrupted run), and only its
missing rows are kept. Units are dealt round-robin; in every round every rank calls `work` (with None when it has
no unit left, so that a model sharded over the ranks can step in lockstep), rank 0 gathers the rows and appends
them in one write. A killed run loses at most its current round.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from data.files import temp_file
from data.text import format_duration
from runtime.distributed import all_gather_objects, broadcast_object, rank, world_size
from runtime.faults import kill_after_round

logger = logging.getLogger("sisu")
Work = Callable[[Sequence[int] | None], tuple[list[dict], dict[str, int]]]


def read_done(path: Path) -> dict[str, dict]:
    """Rows already written (keyed by str(key)); a line cut by a kill is ignored."""
    done: dict[str, dict] = {}
    if not path.is_file():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            done[str(row["key"])] = row
        except (ValueError, KeyError, TypeError):
            continue
    return done


def append_rows(path: Path, rows: Sequence[dict]) -> None:
    """Append JSON lines in one write, so a kill leaves at most one cut line at the end (see read_done)."""
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def rewrite_rows(path: Path, rows: Sequence[dict]) -> None:
    """Replace `path` atomically with `rows` as JSON lines."""
    path = Path(path)
    fd, tmp = temp_file(path.parent, prefix=f".{path.stem}-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    os.replace(tmp, path)


def run_units(
    units: Sequence[Sequence[int]], keys: Sequence[str], *, work: Work, out_path: Path, name: str, unit: str
) -> None:
    """Do every unit (item indices into `keys`) with a key not yet in `out_path` (see the module docstring).
    `work(unit)` returns the unit's rows (one per item, each with its "key") and counts for the progress line
    (e.g. {"tokens": n}); every rank calls this."""
    me, world = rank(), world_size()
    done_keys: list[str] = []
    if me == 0:
        done_rows = read_done(out_path)
        if out_path.exists():
            rewrite_rows(out_path, list(done_rows.values()))  # drop a line cut by a kill before appending
        done_keys = sorted(done_rows)
    done = set(broadcast_object(done_keys, src=0))
    pending = [u for u in units if any(keys[i] not in done for i in u)]
    finished = sum(1 for key in keys if key in done)
    if me == 0 and finished:
        logger.info("%s: %d of %d %s already in %s; continuing", name, finished, len(keys), unit, out_path)
    start, new, counts = time.perf_counter(), 0, {}
    for round_index in range(-(-len(pending) // world)):
        mine = round_index * world + me
        rows, made = work(pending[mine] if mine < len(pending) else None)
        gathered = all_gather_objects(([row for row in rows if str(row["key"]) not in done], made))
        if me == 0:
            new_rows = [row for part, _ in gathered for row in part]
            append_rows(out_path, new_rows)
            new += len(new_rows)
            for _, part in gathered:
                for key, value in part.items():
                    counts[key] = counts.get(key, 0) + value
            logger.info(
                "%s",
                progress_line(
                    name, unit, finished + new, len(keys), new, counts, time.perf_counter() - start
                ),
            )
        kill_after_round(round_index + 1)  # test hook (runtime/faults.py)


def progress_line(name: str, unit: str, done: int, total: int, new: int, counts: dict, elapsed: float) -> str:
    """`translate: 12/40 items (30%), 0.85 items/s, 14.2 segments/s, eta 33s`."""
    rate = new / elapsed if elapsed > 0 else 0.0
    extra = "".join(f", {value / elapsed:.3g} {key}/s" for key, value in counts.items() if elapsed > 0)
    eta = format_duration((total - done) / rate) if rate > 0 else "?"
    return f"{name}: {done}/{total} {unit} ({100 * done / max(total, 1):.0f}%), {rate:.3g} {unit}/s{extra}, eta {eta}"
