"""The memory and throughput planner behind `launch/plan.py`: pure arithmetic, no model is built.

`architectures.py` shapes and parameter counts of decoder models (and the table of known ones); `memory.py` the
per-device memory of training steps and of generation; `throughput.py` tokens/s from model FLOPs at an assumed
MFU; `runtime.py` the CPU process baseline; `report.py` a recipe -> the printed plan. docs/memory.md explains
the formulas. The trainer itself needs only the FLOP count, in runtime/flops.py.
"""
