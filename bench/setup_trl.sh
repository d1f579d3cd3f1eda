#!/usr/bin/env bash
# The TRL side of bench/sft_throughput.py and bench/dpo_throughput.py, in its own virtual environment
# (sisu never imports TRL; the benchmarks start bench/trl_runner.py with this interpreter).
#   bash bench/setup_trl.sh            # creates bench/.venv-trl (about 1.5 GB), once
#   PYTHON=python3.11 bash bench/setup_trl.sh
# The pins are the versions the recorded results used; transformers, datasets and accelerate match sisu's own
# .venv, so both sides run the same modelling code and the same CPU build of torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=bench/.venv-trl
TORCH_PIN=${TORCH_PIN:-torch==2.13.0}
TRL_PINS=${TRL_PINS:-"trl==1.16.0 transformers==5.24.0 datasets==5.2.0 accelerate==1.15.0"}

test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "$TORCH_PIN"   # first, so that trl keeps this CPU build
# shellcheck disable=SC2086  # the pins are separate words
"$VENV/bin/python" -m pip install -q $TRL_PINS
"$VENV/bin/python" - <<'PY'
from importlib import metadata

import torch
import transformers
import trl

print(
    "bench/.venv-trl ready: "
    + ", ".join(f"{name} {metadata.version(name)}" for name in ("torch", "transformers", "datasets", "accelerate", "trl"))
)
assert trl.SFTTrainer and trl.DPOTrainer and transformers.AutoModelForCausalLM and torch.tensor
PY
