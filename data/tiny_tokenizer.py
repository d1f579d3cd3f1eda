"""Tiny tokenizers with a ChatML template, for tests and the tiny recipes.

- byte-level (258 tokens): every UTF-8 byte is one token; `<|im_start|>` and `<|im_end|>` are special tokens, and
  like SmolLM2 the end token doubles as the pad token (eos == pad), which the data and loss code must handle.
  Regenerate the committed copy with `python -m data.tiny_tokenizer recipes/test/tokenizer`.
- word-level (`--words N`): the N most frequent words of each language of data/samples' chats (Finnish and
  English), so a random model writes word salad in both languages, which langdetect tells apart: the tiny pair
  recipe needs answers in the target language and in another one.
  Regenerate with `python -m data.tiny_tokenizer recipes/test/tokenizer_words --words 400`.
"""

from __future__ import annotations

import collections
import json
import re
import sys
from pathlib import Path

from data.templates import CHATML_TEMPLATE


def build_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    return _with_chatml(backend)


def _with_chatml(backend, **special: str):
    """A transformers tokenizer over `backend` with ChatML's markers as special tokens, eos == pad, the ChatML
    template."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        **special,
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


SAMPLE_CHATS = ("data/samples/chat_fi.jsonl", "data/samples/chat_en.jsonl")


def sample_words(path: str | Path, *, count: int) -> list[str]:
    """The `count` most frequent lower-case words of a chat sample file (ties in alphabetical order)."""
    counts: collections.Counter = collections.Counter()
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        for message in json.loads(line)["messages"]:
            counts.update(re.findall(r"[^\W\d_]+", message["content"].lower()))
    return [word for word, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:count]]


def build_word_tokenizer(words_per_language: int, *, root: str | Path = "."):
    """A lower-casing word-level tokenizer over the most frequent words of each sample language (plus [UNK], the
    ChatML role names and punctuation)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    vocab: dict[str, int] = {"[UNK]": 0, "system": 1, "user": 2, "assistant": 3}
    words = [w for path in SAMPLE_CHATS for w in sample_words(Path(root) / path, count=words_per_language)]
    for token in [*".,!?:;-", *words]:
        vocab.setdefault(token, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return _with_chatml(backend, unk_token="[UNK]")


def main(argv: list[str]) -> int:
    args = list(argv)
    words = None
    if "--words" in args:
        at = args.index("--words")
        words = int(args[at + 1])
        del args[at : at + 2]
    out = Path(args[0] if args else "recipes/test/tokenizer")
    tokenizer = build_tiny_tokenizer() if words is None else build_word_tokenizer(words)
    tokenizer.save_pretrained(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
