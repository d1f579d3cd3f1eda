"""Fault injection for tests only: environment variables that make a run fail the way real runs fail.

- `SISU_DEBUG_NAN_AT_STEPS=3,4`: the loss of those optimizer steps (1-based) is made non-finite, as a
  diverging run's would be (tests of step skipping and `train.max_bad_steps`).
- `SISU_DEBUG_SIGKILL_AFTER_STEP=N`: rank 0 kills itself with SIGKILL after step N, like `kill -9` or a lost
  node (tests of exact resume); only in torchrun's first attempt, so a restarted group runs on.
- `SISU_DEBUG_KILL_AFTER_ROUNDS=N`: rank 0 of a generation job (eval, translate, make_pairs) kills itself after
  appending its N-th round (tests of resumed outputs).
- `SISU_DEBUG_BUG_IN_FORWARD=0,1`: the model's forward raises a ValueError on those ranks, as a bug in sisu or in
  a modelling library would (tests that a bug keeps its traceback and names its rank).

Nothing else reads these variables; they are read when a hook is asked, never at import. Users never set them.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from runtime.distributed import rank, restart_count

NAN_STEPS = "SISU_DEBUG_NAN_AT_STEPS"
KILL_AFTER_STEP = "SISU_DEBUG_SIGKILL_AFTER_STEP"
BUG_IN_FORWARD = "SISU_DEBUG_BUG_IN_FORWARD"
KILL_AFTER_ROUND = "SISU_DEBUG_KILL_AFTER_ROUNDS"


def nan_loss_at(step: int) -> bool:
    """Whether the loss of optimizer step `step` (1-based) is to be made non-finite."""
    return str(step) in {s.strip() for s in os.environ.get(NAN_STEPS, "").split(",")}


def _kill_rank0_if(variable: str, count: int) -> None:
    target = os.environ.get(variable)
    if target and int(target) == count and rank() == 0 and restart_count() == 0:  # a restarted group lives on
        os.kill(os.getpid(), signal.SIGKILL)


def kill_after_step(step: int) -> None:
    """Rank 0 dies with SIGKILL after optimizer step `step` when SISU_DEBUG_SIGKILL_AFTER_STEP says so."""
    _kill_rank0_if(KILL_AFTER_STEP, step)


def kill_after_round(round_number: int) -> None:
    """Rank 0 dies with SIGKILL after appending round `round_number` when SISU_DEBUG_KILL_AFTER_ROUNDS says so."""
    _kill_rank0_if(KILL_AFTER_ROUND, round_number)


def plant_forward_bug(model: Any) -> None:
    """On the ranks SISU_DEBUG_BUG_IN_FORWARD lists, make `model`'s forward raise a ValueError (no effect else)."""
    ranks = {r.strip() for r in os.environ.get(BUG_IN_FORWARD, "").split(",") if r.strip()}
    if str(rank()) not in ranks:
        return

    def bug(_module: Any, _args: Any) -> None:
        raise ValueError(f"planted bug in the forward of rank {rank()} ({BUG_IN_FORWARD})")

    model.register_forward_pre_hook(bug)
