"""Inspect the training data exactly as the trainer sees it.

    python launch/inspect_data.py --config recipes/demo/sft.yaml [key=value ...]

Prints per-source and per-language counts, skips by reason, token-length statistics, truncated and dropped
samples, and one rendered example with the trained spans marked ⟦like this⟧.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.pipeline import build_dataset, mark_trained_text  # noqa: E402
from trainer.config import load_config, read_yaml  # noqa: E402
from trainer.jobs import DPOConfig, SFTConfig  # noqa: E402
from trainer.model import prepare_tokenizer  # noqa: E402


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="SFT or DPO recipe")
    parser.add_argument("--example", type=int, default=0, help="index of the example to render (default 0)")
    parser.add_argument("overrides", nargs="*", help="key.path=value overrides")
    args = parser.parse_args(argv)
    try:
        raw = read_yaml(args.config)
        is_dpo = "dpo" in raw or "reference" in raw
        cfg = load_config(DPOConfig if is_dpo else SFTConfig, args.config, args.overrides)
        tokenizer, _template, _added = prepare_tokenizer(cfg.model, cfg.data.template)
        bundle = build_dataset(
            cfg.data,
            tokenizer=tokenizer,
            max_seq_len=cfg.train.max_seq_len,
            expect="preference" if is_dpo else "sft",
        )
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"job: {'dpo' if is_dpo else 'sft'}; chat template: {bundle.template.name}; "
        f"prompt masking: {cfg.data.prompt_masking}; max_seq_len {cfg.train.max_seq_len}"
    )
    for line in bundle.summary_lines():
        print(line)
    index = min(max(args.example, 0), len(bundle.examples) - 1)
    example = bundle.examples[index]
    print(
        f"\nexample {index} (source_id {example.source_id}, lang {example.lang}, truncated {example.truncated}); "
        "tokens with loss are marked ⟦...⟧:\n"
    )
    print(mark_trained_text(bundle, tokenizer, index))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
