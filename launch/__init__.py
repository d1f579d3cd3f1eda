"""Thin entry points (torchrun-able scripts), the list of jobs (`jobs.py`), the config reference generator
(`config_docs.py`) and the SLURM scripts (`slurm/`). The only layer that may import every other."""
