"""Training with FSDP2: the loop and its parts (process group, model loading and sharding are in runtime/).

`jobs.py` (SFT/DPO configs), `trainer.py` (the loop), `steps.py` (how a run splits into steps), `batching.py`,
`objectives.py`, `forward.py`, `step_stats.py` (one step's parts), `sft.py`, `dpo.py`, `optim.py`,
`checkpoint.py` (DCP checkpoints, resume checks, the Hugging Face export).
"""
