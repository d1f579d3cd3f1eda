import pytest

from data.records import ChatRecord, PreferenceRecord
from data.templates import ChatTemplate, TemplateError, render_chat
from data.tokenize import IGNORE_INDEX, TokenizeSettings, tokenize_chat, tokenize_preference, tokenize_records

CHAT = ChatRecord(
    messages=(
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Name a colour"},
        {"role": "assistant", "content": "Blue."},
    ),
    lang="en",
    source_id="c1",
    origin="test:1",
)


def _trained_text(tokenizer, example):
    return tokenizer.decode(
        [t for t, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX]
    )


def test_chatml_masking_trains_every_assistant_turn_with_its_end_token(tiny_tokenizer):
    template = ChatTemplate.resolve(tiny_tokenizer, "chatml")
    settings = TokenizeSettings(max_seq_len=1024, prompt_masking=True)
    example, reason = tokenize_chat(CHAT, tokenizer=tiny_tokenizer, template=template, settings=settings)
    assert reason is None
    assert _trained_text(tiny_tokenizer, example) == "Hello!<|im_end|>Blue.<|im_end|>"
    # eos == pad for this tokenizer: the end token still carries loss
    assert tiny_tokenizer.eos_token_id == tiny_tokenizer.pad_token_id
    assert example.labels[-2] == tiny_tokenizer.eos_token_id  # last token is the "\n" separator, not trained
    assert example.labels[-1] == IGNORE_INDEX


def test_default_trains_on_prompt_and_completion(tiny_tokenizer):
    template = ChatTemplate.resolve(tiny_tokenizer, "chatml")
    example, _ = tokenize_chat(
        CHAT, tokenizer=tiny_tokenizer, template=template, settings=TokenizeSettings(max_seq_len=1024)
    )
    assert list(example.labels) == list(example.input_ids)
    assert tiny_tokenizer.decode(list(example.input_ids)).startswith(
        "<|im_start|>system\nBe brief.<|im_end|>"
    )


def test_smollm2_template_masks_and_keeps_default_system_prompt_untrained(smollm2_tokenizer):
    template = ChatTemplate.resolve(smollm2_tokenizer, "auto")
    assert template.name == "tokenizer"
    record = ChatRecord(messages=CHAT.messages[1:], lang="en", source_id="c1", origin="test:1")
    example, _ = tokenize_chat(
        record,
        tokenizer=smollm2_tokenizer,
        template=template,
        settings=TokenizeSettings(max_seq_len=1024, prompt_masking=True),
    )
    text = smollm2_tokenizer.decode(list(example.input_ids))
    assert "You are a helpful AI assistant named SmolLM" in text  # the template's default system prompt
    assert _trained_text(smollm2_tokenizer, example) == "Hello!<|im_end|>Blue.<|im_end|>"
    masked = sum(1 for label in example.labels if label == IGNORE_INDEX)
    assert 0 < masked < len(example.labels)


def test_template_that_rewrites_history_is_rejected(tiny_tokenizer):
    # drops every assistant turn but the last: the earlier answers are not in the text, so they cannot be trained
    rewriting = ChatTemplate(
        "rewrite",
        "{% for m in messages %}{% if m.role != 'assistant' or loop.last %}<|im_start|>{{ m.role }}\n"
        "{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
        "<|im_end|>",
    )
    with pytest.raises(TemplateError, match="does not write assistant turn 2 once"):
        render_chat(tiny_tokenizer, rewriting, CHAT.messages)


def test_unknown_template_name(tiny_tokenizer):
    with pytest.raises(TemplateError, match="unknown chat template 'vicuna'"):
        ChatTemplate.resolve(tiny_tokenizer, "vicuna")


def test_sft_truncate_or_drop(tiny_tokenizer):
    template = ChatTemplate.resolve(tiny_tokenizer, "chatml")
    full, _ = tokenize_chat(
        CHAT, tokenizer=tiny_tokenizer, template=template, settings=TokenizeSettings(max_seq_len=1024)
    )
    cut, _ = tokenize_chat(
        CHAT, tokenizer=tiny_tokenizer, template=template, settings=TokenizeSettings(max_seq_len=40)
    )
    assert cut.truncated and cut.input_ids == full.input_ids[:40]
    dropped, reason = tokenize_chat(
        CHAT,
        tokenizer=tiny_tokenizer,
        template=template,
        settings=TokenizeSettings(max_seq_len=40, truncation="drop"),
    )
    assert dropped is None and reason == "too_long"
    # masking + a cut before the first assistant turn leaves nothing to train on: dropped and counted
    none_left, reason = tokenize_chat(
        CHAT,
        tokenizer=tiny_tokenizer,
        template=template,
        settings=TokenizeSettings(max_seq_len=30, prompt_masking=True),
    )
    assert none_left is None and reason == "no_target_tokens_after_truncation"


def _pref(prompt_turns, chosen="Yes, exactly right.", rejected="No."):
    return PreferenceRecord(
        prompt=tuple(prompt_turns),
        chosen=chosen,
        rejected=rejected,
        lang="en",
        source_id="p1",
        origin="test:1",
    )


def test_preference_prompt_truncated_from_left_then_completion_from_right(tiny_tokenizer):
    template = ChatTemplate.resolve(tiny_tokenizer, "chatml")
    turns = [
        {"role": "user", "content": "old question " * 5},
        {"role": "assistant", "content": "old answer"},
        {"role": "user", "content": "last question?"},
    ]
    record = _pref(turns, chosen="c" * 60, rejected="r" * 10)
    full, _ = tokenize_preference(
        record,
        tokenizer=tiny_tokenizer,
        template=template,
        settings=TokenizeSettings(max_seq_len=4096, max_prompt_length=4096),
    )
    assert tiny_tokenizer.decode(list(full.chosen_ids)) == "c" * 60 + "<|im_end|>"
    ex, _ = tokenize_preference(
        record,
        tokenizer=tiny_tokenizer,
        template=template,
        settings=TokenizeSettings(max_seq_len=70, max_prompt_length=40),
    )
    assert ex.truncated
    assert ex.prompt_ids == full.prompt_ids[-40:]  # the newest turns survive
    assert tiny_tokenizer.decode(list(ex.prompt_ids)).endswith(
        "last question?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert ex.chosen_ids == full.chosen_ids[:30]  # 70 - 40
    assert ex.rejected_ids == full.rejected_ids  # already short enough
    fits, _ = tokenize_preference(
        record,
        tokenizer=tiny_tokenizer,
        template=template,
        settings=TokenizeSettings(max_seq_len=4096, max_prompt_length=40),
    )
    assert not fits.truncated and fits.prompt_ids == full.prompt_ids  # no cut when the pair fits


def test_tokenize_records_counts(tiny_tokenizer):
    template = ChatTemplate.resolve(tiny_tokenizer, "chatml")
    short = ChatRecord(
        messages=({"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}),
        lang="fi",
        source_id="s",
        origin="t:2",
    )
    settings = TokenizeSettings(max_seq_len=40, truncation="drop")
    examples, stats = tokenize_records([CHAT, short], tokenizer=tiny_tokenizer, template=template, settings=settings)
    assert [e.source_id for e in examples] == ["s"]
    assert stats.num_records == 2 and stats.dropped == {"too_long": 1} and stats.examples == {"too_long": "test:1"}


def test_parallel_workers_give_the_same_examples(tiny_tokenizer):
    template = ChatTemplate.resolve(tiny_tokenizer, "chatml")
    records = [
        ChatRecord(
            messages=({"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "x" * i}),
            lang="en",
            source_id=str(i),
            origin=f"t:{i}",
        )
        for i in range(1, 30)
    ]
    settings = TokenizeSettings(max_seq_len=40, prompt_masking=True)
    one, s1 = tokenize_records(records, tokenizer=tiny_tokenizer, template=template, settings=settings)
    two, s2 = tokenize_records(
        records, tokenizer=tiny_tokenizer, template=template, settings=settings, num_workers=2
    )
    assert one == two and s1.num_truncated == s2.num_truncated > 0


def test_end_of_turn_is_read_off_every_real_template(tiny_tokenizer, shared):
    """The marker each of the 16 real templates writes after an assistant reply (generation stops there).
    Three templates end a turn with the `eos_token` variable: with this tokenizer that is <|im_end|>."""
    import json

    from data.templates import end_of_turn_of

    written_as_eos = {"mistral_nemo_instruct_2407", "olmo_2_1124_13b_instruct", "tulu_3_8b"}
    files = sorted((shared / "templates").glob("*.json"))
    assert len(files) == 16
    for path in files:
        spec = json.loads(path.read_text(encoding="utf-8"))
        expected = tiny_tokenizer.eos_token if path.stem in written_as_eos else spec["end_of_turn"]
        assert end_of_turn_of(tiny_tokenizer, spec["chat_template"]) == expected, path.name
