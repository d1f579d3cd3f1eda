"""Training with FSDP2, and what every job shares: the config system, the model and process-group settings, the
distributed runtime and the model builder.

Shared: `config.py` (YAML + overrides -> dataclasses), `settings.py` (model, process group), `distributed.py`
(process group, the only place collectives are called), `model.py`, `attention.py`, `vocab.py`, `builder.py`,
`parallel.py` (loading, attention per architecture, template tokens, FSDP2 sharding), `devices.py`, `flops.py`,
`metrics.py`, `profiling.py`. Training: `jobs.py` (SFT/DPO configs), `trainer.py` (the loop), `steps.py` (steps
of a run), `batching.py`, `objectives.py`, `forward.py`, `step_stats.py` (one step's parts), `sft.py`, `dpo.py`,
`optim.py`, `checkpoint.py`, `faults.py` (test-only fault injection), `cli.py`.
"""
