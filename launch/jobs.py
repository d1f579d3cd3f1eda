"""Every job sisu runs, by the name recipes, launch/experiments.py and the SLURM scripts use: its root config."""

from eval.config import EvalConfig
from eval.pairs.config import PairsConfig
from eval.translation.config import TranslateConfig
from trainer.jobs import DPOConfig, SFTConfig

JOBS: dict[str, type] = {
    "sft": SFTConfig,
    "dpo": DPOConfig,
    "eval": EvalConfig,
    "translate": TranslateConfig,
    "make_pairs": PairsConfig,
}
