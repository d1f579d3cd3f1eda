"""--dry-run fails where the run would fail: bad data and template problems exit 2 with the one-line error, in SFT,
DPO, eval and translate; only what is unreachable offline (hub data or models not cached) is a note."""

from __future__ import annotations

import importlib.util
import shutil

import pytest
from harness import REPO


def _dry_run(job: str, recipe: str, *overrides: str, monkeypatch, capsys) -> tuple[int, str, str]:
    spec = importlib.util.spec_from_file_location(f"launch_{job}", REPO / "launch" / f"{job}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    code = module.main(["--config", recipe, "--dry-run", *overrides])
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


@pytest.fixture
def malformed(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"messages": []}\n{"messages": [\n', encoding="utf-8")
    return path


CASES = {
    "sft": ("recipes/test/tiny_sft.yaml", "data.sources=[{{path: {path}, format: messages}}]"),
    "dpo": ("recipes/test/tiny_dpo.yaml", "data.sources=[{{path: {path}, format: preference}}]"),
    "translate": ("recipes/test/tiny_translate.yaml", "sources=[{{path: {path}, format: messages}}]"),
    "eval": ("recipes/test/tiny_eval.yaml", "benchmarks=[{{name: b, path: {path}}}]"),
}


@pytest.mark.parametrize("job", sorted(CASES))
def test_malformed_data_fails_the_dry_run(job, malformed, monkeypatch, capsys, tmp_path):
    recipe, override = CASES[job]
    extra = []
    if job == "eval":  # eval's model must exist for the run to start: use the tiny export of a test tokenizer
        model = tmp_path / "model"
        shutil.copytree(REPO / "recipes" / "test" / "tokenizer", model)
        extra = [f"model.path={model}"]
    code, out, err = _dry_run(job, recipe, override.format(path=malformed), *extra, monkeypatch=monkeypatch,
                              capsys=capsys)  # fmt: skip
    assert code == 2, (out, err)
    assert "\n" not in err and str(malformed) in err and "not reachable" not in out


def test_a_template_problem_fails_the_dry_run(tmp_path, monkeypatch, capsys):
    tokenizer = tmp_path / "tokenizer"
    shutil.copytree(REPO / "recipes" / "test" / "tokenizer", tokenizer)
    (tokenizer / "chat_template.jinja").write_text(
        "{{ raise_exception('this template refuses every chat') }}"
    )
    code, out, err = _dry_run(
        "sft",
        "recipes/test/tiny_sft.yaml",
        f"model.tokenizer={tokenizer}",
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert code == 2 and "\n" not in err
    assert err.startswith(
        "error: data/samples/chat_en.jsonl:1: chat template 'tokenizer': this template refuses"
    )


def test_only_hub_data_out_of_reach_is_a_note(monkeypatch, capsys):
    code, out, err = _dry_run(
        "sft",
        "recipes/test/tiny_sft.yaml",
        "data.sources=[{path: SomeOrg/not-cached-anywhere, format: messages}]",
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert code == 0, err
    assert "not reachable from here, so no data statistics or step counts: SomeOrg/not-cached-anywhere" in out
    code, out, err = _dry_run(
        "translate",
        "recipes/test/tiny_translate.yaml",
        "sources=[{path: SomeOrg/not-cached-anywhere, format: messages}]",
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert code == 0 and "SomeOrg/not-cached-anywhere: not reachable from here" in out


def test_a_dry_run_on_untokenized_data_tokenizes_a_sample_and_says_so(tmp_path, monkeypatch, capsys):
    """Above data.pipeline.DRY_RUN_RECORDS records, a cold dry run reads and validates everything but tokenizes an
    even sample; its counts are estimates and it says so. The run afterwards tokenizes everything; a dry run on
    the tokenized data then reports the exact counts."""
    import trainer.steps

    monkeypatch.setattr(trainer.steps, "DRY_RUN_RECORDS", 20)
    cache = f"data.cache_dir={tmp_path / 'cache'}"
    code, out, err = _dry_run(
        "sft", "recipes/test/tiny_sft.yaml", cache, monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 0, err
    assert "tokenized a sample: 20 of the 132 records, spread evenly" in out
    assert "sft examples: 20 (en: 10, fi: 10) from 20 records" in out
    assert "132 examples: 16 steps per epoch" in out  # scaled from the sample (nothing was dropped)
    assert "the example and step counts above are estimates" in out
    from transformers import AutoTokenizer

    from data.config import DataConfig, SourceConfig
    from data.pipeline import build_dataset

    sources = [SourceConfig(path=f"data/samples/chat_{lang}.jsonl", lang=lang) for lang in ("en", "fi")]
    tokenizer = AutoTokenizer.from_pretrained(str(REPO / "recipes/test/tokenizer"))
    build_dataset(
        DataConfig(sources=sources, cache_dir=str(tmp_path / "cache")), tokenizer=tokenizer, max_seq_len=384
    )
    code, out, err = _dry_run(
        "sft", "recipes/test/tiny_sft.yaml", cache, monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 0 and "tokenized a sample" not in out and "estimates" not in out
    assert "sft examples: 132 (en: 66, fi: 66) from 132 records" in out
