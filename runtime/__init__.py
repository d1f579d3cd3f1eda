"""What every job shares: the job's process and its model, apart from any training.

`config.py` (YAML + overrides -> dataclasses, written back beside the outputs), `settings.py` (the model and
process-group settings of every job), `distributed.py` (the process group and the only place collectives are
called; `DataGroup` for the data layer), `devices.py` (accelerator table, peak FLOP/s), `model.py` (tokenizer and
model loading, random init), `attention.py` (attention per architecture, sisu's ALiBi SDPA), `vocab.py` (chat
template markers as new tokens), `parallel.py` (FSDP2 sharding, activation checkpointing), `builder.py` (a model
sharded over the ranks, weights broadcast from rank 0), `fingerprint.py` (what a model is, for run records),
`flops.py` (model FLOPs for MFU and the planner), `metrics.py` (metrics.jsonl, TensorBoard, memory), `profiling.py`
(named ranges, torch.profiler), `faults.py` (test-only fault injection), `cli.py` (the job front end: refusals in
one line, bugs with their traceback).
"""
