"""Masking with the 16 real chat templates of ../shared/templates (Llama 3.x, Mistral Nemo, Gemma 2/3, Qwen 2.5/3,
Phi-3.5/4, OLMo 2, Tülu 3, SmolLM2, DeepSeek-R1 distill, Aya Expanse).

For every template and every test conversation (system prompt, several turns, whitespace around contents, an
answer that repeats the question, no system prompt), the trained text is exactly each assistant turn as the
template writes it plus its end-of-turn marker: no system prompt, no header of the next turn, the system prompt
never lost. docs/templates.md shows each rendering with the trained text marked.
"""

from __future__ import annotations

import json

import pytest

from data.errors import DataError
from data.records import ChatRecord
from data.templates import ChatTemplate, locate_assistant_turns, render_preference
from data.tokenize import IGNORE_INDEX, TokenizeSettings, tokenize_chat, tokenize_records
from launch.template_docs import CONVERSATIONS, VARIABLES, render, template_tokenizer

WRITTEN_AS_EOS = {"mistral_nemo_instruct_2407", "olmo_2_1124_13b_instruct", "tulu_3_8b"}


def _templates(shared):
    files = sorted((shared / "templates").glob("*.json"))
    assert len(files) == 16
    return [(path.stem, json.loads(path.read_text(encoding="utf-8"))) for path in files]


def _trained(tokenizer, example) -> str:
    return tokenizer.decode(
        [t for t, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX]
    )


def test_every_real_template_trains_exactly_the_answers(shared):
    for name, spec in _templates(shared):
        tokenizer = template_tokenizer(spec)
        template = ChatTemplate.resolve(tokenizer, "tokenizer")
        expected_end = tokenizer.eos_token if name in WRITTEN_AS_EOS else spec["end_of_turn"]
        assert template.end_of_turn == expected_end, name
        for title, messages in CONVERSATIONS.items():
            text, spans, folded = locate_assistant_turns(tokenizer, template, messages, variables=VARIABLES)
            answers = [m["content"] for m in messages if m["role"] == "assistant"]
            assert len(spans) == len(answers), (name, title)
            for (start, end), answer in zip(spans, answers):
                span = text[start:end]
                assert span.endswith(template.end_of_turn), (name, span)
                written = span[: -len(template.end_of_turn)]
                assert written in (answer, answer.strip(), answer.rstrip()), (name, span)
            trained = "".join(text[a:b] for a, b in spans)
            for message in messages:
                if message["role"] != "assistant":  # prompts and headers are never trained...
                    assert message["content"].strip() in text, (name, "lost", message)  # ...nor lost
                    rest = trained.replace("What is the capital of Finland? Helsinki.", "")
                    assert message["content"].strip() not in rest, (name, title, message)
            for marker in ("user", "assistant", "model", "USER", "CHATBOT", "[INST]", "<|"):
                inner = [text[a:b][: -len(template.end_of_turn)] for a, b in spans]
                assert not any(marker in piece for piece in inner), (name, marker)
            if messages[0]["role"] == "system":
                assert folded == {
                    "gemma_2_2b_it": "first_user",
                    "mistral_nemo_instruct_2407": "last_user",
                }.get(name)


def test_token_labels_follow_the_spans_for_every_template(shared):
    record = ChatRecord(tuple(next(iter(CONVERSATIONS.values()))), "en", "s1", "chats.jsonl:1")
    settings = TokenizeSettings(max_seq_len=4096, prompt_masking=True)
    for name, spec in _templates(shared):
        tokenizer = template_tokenizer(spec)
        template = ChatTemplate.resolve(tokenizer, "tokenizer")
        example, reason = tokenize_chat(record, tokenizer=tokenizer, template=template, settings=settings)
        assert reason is None, name
        text, spans, _ = locate_assistant_turns(tokenizer, template, record.messages)
        assert _trained(tokenizer, example) == "".join(text[a:b] for a, b in spans), name


def test_preference_completion_is_the_answer_as_written(shared):
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    for name, spec in _templates(shared):
        tokenizer = template_tokenizer(spec)
        template = ChatTemplate.resolve(tokenizer, "tokenizer")
        before, completion = render_preference(tokenizer, template, prompt, " Hello!\n")
        assert completion.endswith(template.end_of_turn), name
        assert completion[: -len(template.end_of_turn)] in (" Hello!\n", "Hello!", " Hello!", "Hello!\n"), (
            name
        )
        assert "Be brief." in before and "Hi there" in before, name


def test_the_template_docs_are_current(shared, tmp_path):
    from launch.template_docs import DEFAULT_OUT, main

    text = render(shared / "templates")
    assert DEFAULT_OUT.read_text(encoding="utf-8") == text, "run: python launch/template_docs.py"
    assert (
        text.count("⟦") == 1 + 16 * 3 and "cannot be rendered" not in text
    )  # the legend, then 3 answers each
    assert main(["--templates", str(shared / "templates"), "--check"]) == 0


@pytest.fixture
def mistral(shared):
    spec = json.loads((shared / "templates" / "mistral_nemo_instruct_2407.json").read_text(encoding="utf-8"))
    tokenizer = template_tokenizer(spec)
    return tokenizer, ChatTemplate.resolve(tokenizer, "tokenizer")


def _record(line: int, messages):
    return ChatRecord(tuple(messages), "en", f"r{line}", f"chats.jsonl:{line}")


GOOD = [{"role": "user", "content": "Moi"}, {"role": "assistant", "content": "Hei!"}]
# Mistral's template raises on two user turns in a row (its alternation check); sisu's sources validate
# alternation too, so this stands for any record a template refuses.
BAD = [
    {"role": "user", "content": "a"},
    {"role": "user", "content": "b"},
    {"role": "assistant", "content": "c"},
]


def test_a_record_the_template_refuses_follows_on_invalid(mistral):
    tokenizer, template = mistral
    records = [_record(1, GOOD), _record(2, BAD), _record(3, GOOD)]
    with pytest.raises(DataError) as info:
        tokenize_records(
            records, tokenizer=tokenizer, template=template, settings=TokenizeSettings(max_seq_len=256)
        )
    message = str(info.value)
    assert "\n" not in message and message.startswith("chats.jsonl:2: chat template 'tokenizer':")
    assert "alternate" in message
    skip = TokenizeSettings(max_seq_len=256, on_invalid="skip")
    examples, stats = tokenize_records(records, tokenizer=tokenizer, template=template, settings=skip)
    assert [e.source_id for e in examples] == ["r1", "r3"]
    assert stats.dropped == {"template_error": 1} and stats.examples["template_error"].startswith(
        "chats.jsonl:2:"
    )


def test_a_template_that_renders_no_record_stops_once(mistral):
    tokenizer, template = mistral
    records = [_record(7, BAD), _record(8, BAD)]
    skip = TokenizeSettings(max_seq_len=256, on_invalid="skip")
    with pytest.raises(DataError) as info:
        tokenize_records(records, tokenizer=tokenizer, template=template, settings=skip)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        "chat template 'tokenizer' cannot render any of the 2 records; the first: chats.jsonl:7:"
    )


@pytest.mark.parametrize(
    ("name", "where"), [("gemma_2_2b_it", "first"), ("mistral_nemo_instruct_2407", "last")]
)
def test_folded_system_prompts_are_reported_alike_from_the_cache(shared, tmp_path, name, where):
    """The fold (where, how many records) travels through the tokenized dataset on disk: a re-run that maps it
    reports what the first run reported."""
    from data.config import DataConfig, SourceConfig
    from data.pipeline import build_dataset

    spec = json.loads((shared / "templates" / f"{name}.json").read_text(encoding="utf-8"))
    tokenizer = template_tokenizer(spec)
    system = {"role": "system", "content": "Vastaa lyhyesti."}
    turn = [
        {"role": "user", "content": "Mikä on Suomen pääkaupunki?"},
        {"role": "assistant", "content": "Helsinki."},
    ]
    chats = tmp_path / "chats.jsonl"
    with chats.open("w", encoding="utf-8") as f:
        for source_id, messages in (("s1", [system, *turn]), ("s2", turn), ("s3", [system, *turn])):
            f.write(json.dumps({"source_id": source_id, "lang": "fi", "messages": messages}) + "\n")
    cfg = DataConfig(
        sources=[SourceConfig(path=str(chats))], template="tokenizer", prompt_masking=True, cache_dir=str(tmp_path)
    )
    reports = []
    for _ in range(2):
        bundle = build_dataset(cfg, tokenizer=tokenizer, max_seq_len=256)
        reports.append((bundle.stats.system_fold, bundle.stats.num_folded_system, len(bundle.dataset)))
    assert len(list(tmp_path.glob("tokenized-*"))) == 1
    assert reports == [(f"{where}_user", 2, 3)] * 2
