"""A tiny byte-level tokenizer (258 tokens) with a ChatML template, for tests and the tiny recipes.

Every UTF-8 byte is one token; `<|im_start|>` and `<|im_end|>` are special tokens, and like SmolLM2 the end
token doubles as the pad token (eos == pad), which the data and loss code must handle.
Regenerate the committed copy with `python -m data.tiny_tokenizer recipes/test/tokenizer`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from data.templates import CHATML_TEMPLATE


def build_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "recipes/test/tokenizer")
    build_tiny_tokenizer().save_pretrained(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
