"""The committed tiny tokenizers are what data/tiny_tokenizer.py builds (regenerate them with its commands)."""


from harness import REPO
from transformers import AutoTokenizer

from data.tiny_tokenizer import build_tiny_tokenizer, build_word_tokenizer, sample_words


def test_committed_tokenizers_match_their_builders():
    for path, built in (
        ("recipes/test/tokenizer", build_tiny_tokenizer()),
        ("recipes/test/tokenizer_words", build_word_tokenizer(400, root=REPO)),
    ):
        committed = AutoTokenizer.from_pretrained(REPO / path)
        assert committed.get_vocab() == built.get_vocab(), path
        assert committed.chat_template == built.chat_template, path


def test_the_word_tokenizer_writes_both_languages():
    tokenizer = AutoTokenizer.from_pretrained(REPO / "recipes/test/tokenizer_words")
    finnish = sample_words(REPO / "data/samples/chat_fi.jsonl", count=400)
    english = sample_words(REPO / "data/samples/chat_en.jsonl", count=400)
    assert len(finnish) == len(english) == 400 and {"ja", "the"} <= set(finnish) | set(english)
    text = "Sauna on hyvä ja the answer is here"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text.lower() and tokenizer.unk_token_id not in ids
    assert tokenizer.eos_token_id == tokenizer.pad_token_id  # like SmolLM2, as the byte-level one
