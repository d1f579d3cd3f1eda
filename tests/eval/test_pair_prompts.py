"""The prompts of launch/make_pairs.py (eval/pairs/prompts.py): read from chat, preference and IFEval-schema
sources, screened (benchmark prompts refused, duplicates, other response languages, template errors, length),
and rendered exactly as DPO renders a prompt, with real chat templates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness import REPO

from data.config import SourceConfig
from data.errors import Unreachable
from data.templates import ChatTemplate, render_preference
from eval.ifeval import Prompt
from eval.pairs.config import BenchmarkPromptsConfig, PairsConfig
from eval.pairs.prompts import (
    PairPrompt,
    benchmark_texts,
    load_pair_prompts,
    normalise,
    render_prompt,
    screen_prompts,
)
from launch.template_docs import template_tokenizer


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


CHAT = {
    "source_id": "c1",
    "lang": "fi",
    "messages": [
        {"role": "system", "content": "Vastaa lyhyesti."},
        {"role": "user", "content": "Mikä on Suomen pääkaupunki?"},
        {"role": "assistant", "content": "Helsinki."},
        {"role": "user", "content": "Entä Ruotsin?"},
        {"role": "assistant", "content": "Tukholma."},
    ],
}
PAIR = {
    "source_id": "p1",
    "lang": "fi",
    "prompt": "Kerro vitsi.",
    "chosen": "Hyvä vitsi.",
    "rejected": "Huono.",
}
INSTRUCTION = {
    "key": "k1",
    "prompt": "Kirjoita runo kissasta. Älä käytä pilkkuja.",
    "instruction_id_list": ["punctuation:no_comma"],
    "kwargs": [{}],
}


def _config(tmp_path, **fields) -> PairsConfig:
    cfg = PairsConfig(output_dir=str(tmp_path / "out"), benchmarks=[], **fields)
    cfg.check()
    return cfg


def test_prompts_of_every_kind_of_source(tmp_path):
    chats = _write(tmp_path / "chats.jsonl", [CHAT])
    pairs = _write(tmp_path / "pairs.jsonl", [PAIR])
    instructions = _write(tmp_path / "inst.jsonl", [INSTRUCTION])
    cfg = _config(
        tmp_path,
        sources=[SourceConfig(path=chats, lang="fi"), SourceConfig(path=pairs, format="preference")],
        instruction_sources=[instructions],
    )
    prompts, reports = load_pair_prompts(cfg)
    assert [p.key for p in prompts] == ["0:0:c1", "1:0:p1", "i0:k1"]
    chat, pair, instruction = prompts
    # a chat up to its last user turn, earlier turns kept
    assert [m["content"] for m in chat.messages] == [m["content"] for m in CHAT["messages"][:4]]
    assert chat.origin == f"{chats}:1" and chat.instructions is None
    assert pair.messages == ({"role": "user", "content": "Kerro vitsi."},)
    assert instruction.messages == ({"role": "user", "content": INSTRUCTION["prompt"]},)
    assert instruction.instructions.instruction_id_list == ("punctuation:no_comma",)
    assert [r.num_records for r in reports] == [1, 1, 1]


def _prompt(key, text, *, instructions=None, system=None) -> PairPrompt:
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": text}
    ]
    return PairPrompt(key, key, tuple(messages), f"x.jsonl:{key}", instructions)


def _screen(prompts, *, refused=(), template=None, tokenizer=None, max_prompt_tokens=4096):
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(REPO / "recipes" / "test" / "tokenizer")
    template = template or ChatTemplate.resolve(tokenizer, "auto")
    return screen_prompts(
        prompts,
        refused={normalise(t) for t in refused},
        target_lang="fi",
        tokenizer=tokenizer,
        template=template,
        max_prompt_tokens=max_prompt_tokens,
    )


def test_benchmark_prompts_are_refused_whatever_their_case_and_spacing():
    benchmark = "Write a 300+ word summary of the wikipedia page. Do not use any commas."
    prompts = [
        _prompt("a", "WRITE a 300+ word summary of the  wikipedia page.\nDo not use any commas.  "),
        _prompt(
            "b", "Write a 300+ word summary of the wikipedia page."
        ),  # only a part: not the benchmark prompt
        _prompt("c", benchmark, system="Olet avulias."),  # a system prompt does not hide it
    ]
    screened = _screen(prompts, refused=[benchmark])
    assert screened.skipped == {"benchmark_prompt": ["a", "c"]}
    assert [p.key for p in screened.prompts] == ["b"]


def test_duplicates_other_languages_template_errors_and_length_are_counted():
    asks_english = Prompt("e", "Vastaa englanniksi.", ("language:response_language",), ({"language": "en"},))
    asks_finnish = Prompt("f", "Vastaa suomeksi.", ("language:response_language",), ({"language": "fi"},))
    prompts = [
        _prompt("a", "Kerro jotain."),
        _prompt("b", "Kerro jotain."),  # the same conversation again
        _prompt("e", asks_english.prompt, instructions=asks_english),
        _prompt("f", asks_finnish.prompt, instructions=asks_finnish),
        _prompt("long", "sana " * 400),
    ]
    screened = _screen(prompts, max_prompt_tokens=200)
    assert screened.skipped == {
        "duplicate_prompt": ["b"],
        "asks_other_language": ["e"],
        "prompt_too_long": ["long"],
    }
    assert [p.key for p in screened.prompts] == ["a", "f"]
    assert all(len(ids) <= 200 for ids in screened.token_ids)


def test_a_prompt_the_template_cannot_write_is_a_counted_skip(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(REPO / "recipes" / "test" / "tokenizer")
    # a template that refuses conversations longer than one exchange (as some single-turn templates do)
    refusing = ChatTemplate(
        "tokenizer",
        "{% if messages|length > 2 %}{{ raise_exception('one exchange only') }}{% endif %}"
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}",
        "\n",
    )
    two_turns = PairPrompt(
        "t",
        "t",
        (
            {"role": "user", "content": "Hei"},
            {"role": "assistant", "content": "Moi"},
            {"role": "user", "content": "?"},
        ),
        "x.jsonl:3",
    )
    screened = _screen([two_turns, _prompt("u", "Hei")], template=refusing, tokenizer=tokenizer)
    assert screened.skipped == {"template_error": ["t"]} and [p.key for p in screened.prompts] == ["u"]


@pytest.mark.parametrize("name", ["llama_3_1_8b_instruct", "gemma_2_2b_it", "mistral_nemo_instruct_2407"])
def test_prompts_are_rendered_as_dpo_renders_them_with_real_templates(shared, name):
    spec = json.loads((shared / "templates" / f"{name}.json").read_text(encoding="utf-8"))
    tokenizer = template_tokenizer(spec)
    template = ChatTemplate.resolve(tokenizer, "tokenizer")
    messages = tuple({k: v for k, v in m.items()} for m in CHAT["messages"][:4])
    ids = render_prompt(tokenizer, template, messages)
    before, _ = render_preference(tokenizer, template, messages, "Tukholma.")
    assert ids == tokenizer(before, add_special_tokens=False)["input_ids"]
    text = tokenizer.decode(ids)
    # every turn is there (Gemma folds the system prompt into the first user turn), and the answer starts next
    for message in messages:
        assert message["content"] in text, (name, message)
    assert not text.rstrip().endswith("Entä Ruotsin?"), "the assistant header follows the last user turn"


def test_benchmarks_load_from_local_files_and_are_refused_offline_when_out_of_reach(tmp_path, monkeypatch):
    local = _write(tmp_path / "bench.jsonl", [INSTRUCTION])
    texts, lines = benchmark_texts([BenchmarkPromptsConfig(path=local)])
    assert texts == {normalise(INSTRUCTION["prompt"])} and "1 prompts are refused" in lines[0]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Unreachable, match=r"benchmarks\.1: SomeOrg/not-cached is out of reach offline"):
        benchmark_texts(
            [BenchmarkPromptsConfig(path=local), BenchmarkPromptsConfig(path="SomeOrg/not-cached")]
        )


def test_the_default_benchmarks_are_ifeval_in_english_and_finnish(tmp_path):
    cfg = PairsConfig(output_dir=str(tmp_path))
    assert [(b.path, b.subset) for b in cfg.benchmarks] == [
        ("google/IFEval", None),
        ("LumiOpen/ifeval_mt", "fi"),
    ]


def test_the_shipped_instruction_prompts_are_not_benchmark_prompts(shared):
    """data/samples/instructions_fi.jsonl is training data: none of its prompts is an IFEval prompt (the 541 English
    ones, the bundled Finnish test set and the demo benchmark)."""
    from eval.ifeval import load_prompts

    benchmark = {normalise(p.prompt) for p in load_prompts(shared / "ifeval" / "input_data.jsonl")}
    for path in ("eval/ifeval/data/fi_test_prompts.jsonl", "eval/ifeval/data/en_demo_prompts.jsonl"):
        benchmark |= {normalise(p.prompt) for p in load_prompts(REPO / path)}
    ours = load_prompts(REPO / "data" / "samples" / "instructions_fi.jsonl")
    assert len(ours) == 16 and not {normalise(p.prompt) for p in ours} & benchmark
