"""What differs between SFT and DPO inside one optimizer step, in two parts the trainer composes:

- batching (trainer/batching.py): this rank's examples of the step -> micro-batches (padded or packed), filler
  micro-batches, and each micro-batch's share of the step's normaliser;
- the objective (trainer/objectives.py): the summed loss of a micro-batch and its statistics, and the step's
  metrics from the summed statistics.

The DPO reference's precompute pass uses the batching alone.
"""

from __future__ import annotations

import dataclasses

from trainer.batching import Batching
from trainer.objectives import Objective


@dataclasses.dataclass(frozen=True)
class Task:
    batching: Batching
    objective: Objective
