"""Inspect the training data exactly as the trainer sees it.

    python launch/inspect_data.py --config recipes/demo/sft.yaml [key=value ...]
    python launch/inspect_data.py --config RECIPE --show 2      # 2 examples per source and language
    python launch/inspect_data.py --config RECIPE --example 17  # one example by index

Prints per-source and per-language counts, skips by reason, token-length statistics, truncated and dropped
samples, and rendered examples with the trained text marked ⟦like this⟧. Sources that are translations
(launch/translate.py output: `orig_content`, `orig_chosen`, `orig_rejected`) are also shown record by record
beside their originals.
"""

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.errors import SisuError  # noqa: E402
from data.pipeline import build_dataset, examples_by_source, mark_trained_text  # noqa: E402
from runtime.config import load_config, read_yaml  # noqa: E402
from runtime.model import prepare_tokenizer  # noqa: E402
from trainer.jobs import DPOConfig, SFTConfig  # noqa: E402


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="SFT or DPO recipe")
    parser.add_argument("--example", type=int, default=0, help="index of the example to render (default 0)")
    parser.add_argument(
        "--show", type=int, default=0, help="render N examples per source and language (default: one example)"
    )
    parser.add_argument("--width", type=int, default=56, help="column width of the side-by-side translations")
    parser.add_argument("overrides", nargs="*", help="key.path=value overrides")
    args = parser.parse_intermixed_args(argv)  # options and key=value overrides in any order
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
    except SisuError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(
        f"job: {'dpo' if is_dpo else 'sft'}; chat template: {bundle.template.name}; "
        f"prompt masking: {cfg.data.prompt_masking}; max_seq_len {cfg.train.max_seq_len}"
    )
    for line in bundle.summary_lines():
        print(line)
    if args.show > 0:
        for (source, lang), indices in examples_by_source(bundle).items():
            print(
                f"\n=== {source} ({lang}): {len(indices)} examples, the first {min(args.show, len(indices))} ==="
            )
            for index in indices[: args.show]:
                _print_example(bundle, tokenizer, index)
    else:
        _print_example(bundle, tokenizer, min(max(args.example, 0), len(bundle.dataset) - 1))
    for source in cfg.data.sources:
        _print_translations(source.path, count=max(args.show, 1), width=args.width)
    return 0


def _print_example(bundle, tokenizer, index: int) -> None:
    example = bundle.dataset[index]
    print(
        f"\nexample {index} (source_id {example.source_id}, lang {example.lang}, truncated {example.truncated}); "
        "tokens with loss are marked ⟦...⟧:\n"
    )
    print(mark_trained_text(bundle, tokenizer, index))


def _print_translations(path: str, *, count: int, width: int) -> None:
    """The first `count` records of a translated local JSONL source, each text beside its original."""
    file = Path(path)
    if file.suffix != ".jsonl" or not file.is_file():
        return
    shown = 0
    with file.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            pairs = [(m["orig_content"], m["content"], m["role"]) for m in row.get("messages", []) + row.get(
                "prompt", []) if isinstance(m, dict) and "orig_content" in m]  # fmt: skip
            for key in ("chosen", "rejected"):
                if f"orig_{key}" in row:
                    pairs.append((row[f"orig_{key}"], row[key], key))
            if not pairs:
                return  # not a translation
            if shown == 0:
                print(f"\n=== {path}: translations beside their originals (the first {count}) ===")
            print(f"\n--- {row.get('source_id', '?')} ---")
            for original, translated, label in pairs:
                print(f"[{label}]")
                print(side_by_side(original, translated, width=width))
            shown += 1
            if shown >= count:
                return


def side_by_side(left: str, right: str, *, width: int) -> str:
    """Two texts in columns of `width` characters, line by line (long lines wrapped)."""

    def wrapped(text: str) -> list[str]:
        out: list[str] = []
        for line in text.splitlines() or [""]:
            out += textwrap.wrap(line, width) or [""]
        return out

    a, b = wrapped(left), wrapped(right)
    rows = max(len(a), len(b))
    a += [""] * (rows - len(a))
    b += [""] * (rows - len(b))
    return "\n".join(f"{x:<{width}} | {y}" for x, y in zip(a, b))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
