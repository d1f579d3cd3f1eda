"""Translation: segmentation and exact reassembly, the few-shot prompt, and records -> output rows (fake translator)."""

import json

import pytest

from data.config import SourceConfig
from data.records import ChatRecord, PreferenceRecord
from data.sources import load_source
from data.translate.config import TranslatePromptConfig
from data.translate.items import output_row, record_fields
from data.translate.prompt import DEFAULT_EXAMPLES, FewShotPrompt
from data.translate.segment import split_text, strip_code
from runtime.config import build_config


def fake(segment: str) -> str:
    """A deterministic 'translator' whose output is easy to recognise."""
    return f"<{segment.upper()}>"


def translate_text(text: str, *, max_chars: int = 600) -> str:
    template = split_text(text, max_chars=max_chars)
    return template.fill([fake(s) for s in template.segments])


def sample_texts(repo) -> list[str]:
    texts = []
    for name in ("chat_en.jsonl", "chat_fi.jsonl", "helpsteer2_en.jsonl"):
        for line in (repo / "data" / "samples" / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts += [m["content"] for m in row.get("messages", [])]
            texts += [row[k] for k in ("prompt", "response") if k in row]
    return texts


def test_identity_reassembly_on_all_sample_texts(repo):
    texts = sample_texts(repo)
    assert len(texts) > 300
    for text in texts:
        for max_chars in (600, 60, 5):
            template = split_text(text, max_chars=max_chars)
            assert template.fill(template.segments) == text
            assert all("\n" not in s and s == s.strip() and s for s in template.segments)


def test_code_fences_are_verbatim_and_never_segments():
    text = (
        "Here is the code:\n\n```python\n# a comment in English\ndef add(a, b):\n    return a + b\n```\n\n"
        "  ~~~\n  indented tilde fence text\n  ~~~\nAfter the code.\n"
    )
    template = split_text(text)
    assert template.segments == ("Here is the code:", "After the code.")
    out = translate_text(text)
    assert "```python\n# a comment in English\ndef add(a, b):\n    return a + b\n```" in out
    assert "  ~~~\n  indented tilde fence text\n  ~~~" in out
    assert out.startswith("<HERE IS THE CODE:>\n\n```") and out.endswith("<AFTER THE CODE.>\n")


def test_unclosed_fence_keeps_the_rest_verbatim():
    text = "Intro line.\n```\nnever closed\nstill code"
    assert split_text(text).segments == ("Intro line.",)
    assert translate_text(text) == "<INTRO LINE.>\n```\nnever closed\nstill code"


def test_a_fence_closes_only_with_its_own_marker():
    text = "````md\n```\ninner\n```\n````\nText after."
    assert split_text(text).segments == ("Text after.",)


def test_lists_headers_quotes_tables_and_blank_lines():
    text = (
        "## Shopping list\n\n"
        "- milk and bread\n"
        "* two apples\n"
        "   + nested item here\n"
        "1. first step\n"
        "10) tenth step\n"
        "- [ ] an open task\n"
        "> a quoted line\n"
        "\n\n"
        "| Name | Role |\n"
        "|:---|---:|\n"
        "| Ann | lead singer |\n"
        "---\n"
        "**Bold start** of a line.  \n"
        "Windows line.\r\n"
        "42\n"
    )
    out = translate_text(text)
    assert out == (
        "## <SHOPPING LIST>\n\n"
        "- <MILK AND BREAD>\n"
        "* <TWO APPLES>\n"
        "   + <NESTED ITEM HERE>\n"
        "1. <FIRST STEP>\n"
        "10) <TENTH STEP>\n"
        "- [ ] <AN OPEN TASK>\n"
        "> <A QUOTED LINE>\n"
        "\n\n"
        "| <NAME> | <ROLE> |\n"
        "|:---|---:|\n"
        "| <ANN> | <LEAD SINGER> |\n"
        "---\n"
        "<**BOLD START** OF A LINE.>  \n"
        "<WINDOWS LINE.>\r\n"
        "42\n"
    )


def test_emphasis_is_not_a_list_marker_and_inline_code_stays_in_the_segment():
    assert split_text("*Note:* call `len(x)` first").segments == ("*Note:* call `len(x)` first",)
    assert strip_code("call `len(x)` now\n```\ncode\n```\nend") == "call   now\nend"


def test_long_lines_split_at_sentence_ends_only():
    sentences = ["First sentence is here.", "Second one asks why?", 'Third says "yes!"', "Fourth ends."]
    line = " ".join(sentences)
    template = split_text(line, max_chars=45)
    assert template.segments == (
        "First sentence is here. Second one asks why?",
        'Third says "yes!" Fourth ends.',
    )
    assert template.fill(template.segments) == line
    # a single sentence longer than max_chars is never cut
    long_sentence = "word " * 30 + "end."
    assert split_text(long_sentence.strip(), max_chars=20).segments == (long_sentence.strip(),)
    # e.g. and 3.5 do not end sentences when followed by no space
    assert split_text("Version 3.5 is out. Update now.", max_chars=15).segments == (
        "Version 3.5 is out.",
        "Update now.",
    )


def test_multi_turn_chat_fields_roles_and_output_row():
    record = ChatRecord(
        messages=(
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "Show code.\n\n```\nx = 1\n```"},
            {"role": "assistant", "content": "- one\n- two"},
            {"role": "user", "content": "Thanks!"},
            {"role": "assistant", "content": "You're welcome."},
        ),
        lang="en",
        source_id="c1",
        origin="x:1",
    )
    fields = record_fields(record, roles=["user", "assistant"])
    assert [(f.name, f.translate) for f in fields] == [
        ("messages.0", False),
        ("messages.1", True),
        ("messages.2", True),
        ("messages.3", True),
        ("messages.4", True),
    ]
    texts = {f.name: translate_text(f.text) for f in fields if f.translate}
    row = output_row(record, texts, lang="fi")
    assert row["source_id"] == "c1" and row["lang"] == "fi"
    assert [m["role"] for m in row["messages"]] == [m["role"] for m in record.messages]
    assert [m["orig_content"] for m in row["messages"]] == [m["content"] for m in record.messages]
    assert row["messages"][0]["content"] == "You are helpful."  # role not translated: copied
    assert row["messages"][1]["content"] == "<SHOW CODE.>\n\n```\nx = 1\n```"
    assert row["messages"][2]["content"] == "- <ONE>\n- <TWO>"


def test_preference_fields_and_output_row():
    record = PreferenceRecord(
        prompt=(
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Name a colour."},
        ),
        chosen="Blue.",
        rejected="1. Red\n2. Green",
        lang="en",
        source_id="p1",
        origin="x:2",
    )
    fields = record_fields(record, roles=["user"])
    assert [(f.name, f.translate) for f in fields] == [
        ("prompt.0", True),
        ("prompt.1", False),
        ("prompt.2", True),
        ("chosen", True),
        ("rejected", True),
    ]
    texts = {f.name: translate_text(f.text) for f in fields if f.translate}
    row = output_row(record, texts, lang="fi")
    assert row == {
        "source_id": "p1",
        "lang": "fi",
        "prompt": [
            {"role": "user", "content": "<HI>", "orig_content": "Hi"},
            {"role": "assistant", "content": "Hello!", "orig_content": "Hello!"},
            {"role": "user", "content": "<NAME A COLOUR.>", "orig_content": "Name a colour."},
        ],
        "chosen": "<BLUE.>",
        "rejected": "1. <RED>\n2. <GREEN>",
        "orig_chosen": "Blue.",
        "orig_rejected": "1. Red\n2. Green",
    }


def test_output_rows_load_back_as_sources(tmp_path):
    chat = ChatRecord(
        messages=({"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello"}),
        lang="en",
        source_id="c9",
        origin="x",
    )
    pref = PreferenceRecord(
        prompt=({"role": "user", "content": "Q?"},),
        chosen="Good",
        rejected="Bad",
        lang="en",
        source_id="p9",
        origin="y",
    )
    for record, fmt in ((chat, "messages"), (pref, "preference")):
        texts = {f.name: translate_text(f.text) for f in record_fields(record, roles=["user", "assistant"])}
        path = tmp_path / f"{fmt}.jsonl"
        path.write_text(json.dumps(output_row(record, texts, lang="fi")) + "\n", encoding="utf-8")
        (loaded,), report = load_source(SourceConfig(path=str(path), format=fmt))
        assert loaded.source_id == record.source_id and loaded.lang == "fi"
        if fmt == "messages":
            assert loaded.messages == (
                {"role": "user", "content": "<HI THERE>"},
                {"role": "assistant", "content": "<HELLO>"},
            )
        else:
            assert (loaded.chosen, loaded.rejected) == ("<GOOD>", "<BAD>")


def test_default_prompt_layout_and_output_cleaning():
    prompt = FewShotPrompt.from_config(TranslatePromptConfig(), source_lang="en", target_lang="fi")
    text = prompt.render("Hello world.")
    assert text.startswith("Translate the following texts from English to Finnish.")
    assert text.endswith("###\nEnglish: Hello world.\nFinnish:")
    assert text.count("###\n") == len(DEFAULT_EXAMPLES)
    for source, target in DEFAULT_EXAMPLES:
        assert f"English: {source}\nFinnish: {target}\n###\n" in text
    assert prompt.clean(" Hei maailma.\n###\nEnglish: more") == "Hei maailma."
    assert prompt.clean(" Hei ### tail") == "Hei"
    assert prompt.markers == ("###", "English:", "Finnish:")


def test_custom_prompt_and_other_languages_need_examples():
    custom = build_config(
        TranslatePromptConfig,
        {"header": "{source} -> {target}", "examples": [{"source": "Hi", "target": "Hej"}], "stop": "@@"},
    )
    prompt = FewShotPrompt.from_config(custom, source_lang="en", target_lang="sv")
    assert (
        prompt.render("Bye") == "English -> Swedish\n\nEnglish: Hi\nSwedish: Hej\n@@\nEnglish: Bye\nSwedish:"
    )
    with pytest.raises(ValueError, match="prompt.examples"):
        FewShotPrompt.from_config(TranslatePromptConfig(), source_lang="en", target_lang="sv")
    with pytest.raises(ValueError, match="placeholders"):
        FewShotPrompt.from_config(TranslatePromptConfig(header="{oops}"), source_lang="en", target_lang="fi")


def test_bare_urls_and_addresses_stay_verbatim():
    """Nothing to translate in a bare URL or address: never sent to the model, so never `untranslated`."""
    text = "See the docs:\nhttps://example.com/a?b=1\n- <https://sisu.example/x>\nwww.example.fi\nmail@example.fi\n"
    template = split_text(text)
    assert template.segments == ("See the docs:",)
    assert template.fill(["Katso ohjeet:"]) == text.replace("See the docs:", "Katso ohjeet:")
    assert split_text("Read https://example.com first.").segments == ("Read https://example.com first.",)
