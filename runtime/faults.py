"""Fault injection for tests only: environment variables that make a run fail the way real runs fail.

- `SISU_DEBUG_NAN_AT_STEPS=3,4`: the loss of those optimizer steps (1-based) is made non-finite, as a
  diverging run's would be (tests of step skipping and `train.max_bad_steps`).
- `SISU_DEBUG_SIGKILL_AFTER_STEP=N`: rank 0 kills itself with SIGKILL after step N, like `kill -9` or a lost
  node (tests of exact resume).
- `SISU_TRANSLATE_KILL_AFTER_ROUNDS=N`: rank 0 of a translation kills itself after appending its N-th round.

Nothing else reads these variables; they are read when a hook is asked, never at import. Users never set them.
"""

from __future__ import annotations

import os
import signal

from runtime.distributed import rank

NAN_STEPS = "SISU_DEBUG_NAN_AT_STEPS"
KILL_AFTER_STEP = "SISU_DEBUG_SIGKILL_AFTER_STEP"
KILL_AFTER_ROUND = "SISU_TRANSLATE_KILL_AFTER_ROUNDS"


def nan_loss_at(step: int) -> bool:
    """Whether the loss of optimizer step `step` (1-based) is to be made non-finite."""
    return str(step) in {s.strip() for s in os.environ.get(NAN_STEPS, "").split(",")}


def _kill_rank0_if(variable: str, count: int) -> None:
    target = os.environ.get(variable)
    if target and int(target) == count and rank() == 0:
        os.kill(os.getpid(), signal.SIGKILL)


def kill_after_step(step: int) -> None:
    """Rank 0 dies with SIGKILL after optimizer step `step` when SISU_DEBUG_SIGKILL_AFTER_STEP says so."""
    _kill_rank0_if(KILL_AFTER_STEP, step)


def kill_after_round(round_number: int) -> None:
    """Rank 0 dies with SIGKILL after appending round `round_number` when SISU_TRANSLATE_KILL_AFTER_ROUNDS says so."""
    _kill_rank0_if(KILL_AFTER_ROUND, round_number)
