"""launch/translate.py end to end on a tiny random model: outputs load back, kill -9 and restart, 2 ranks = 1."""

import contextlib
import importlib.util
import io
import json
import logging
import os
import signal

import pytest
from harness import REPO, run_job

from data.config import SourceConfig
from data.sources import load_source

RECIPE = "recipes/test/tiny_translate.yaml"
OUTPUTS = ("chat_en.fi.jsonl", "helpsteer2_en.fi.jsonl", "rejected.jsonl", "report.json")


def _translate(out, *overrides, nproc=1, check=True, **env):
    """launch/translate.py in a subprocess (torchrun for nproc > 1)."""
    return run_job("launch/translate.py", RECIPE, f"output_dir={out}", *overrides, nproc=nproc, env=env, check=check,
                   timeout=300)  # fmt: skip


def _translate_here(out, *overrides, dry_run=False) -> int:
    """launch/translate.py's main() in this process (saves a Python start on a busy 2-core machine)."""
    spec = importlib.util.spec_from_file_location("launch_translate", REPO / "launch" / "translate.py")
    launcher = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launcher)
    previous = os.getcwd()
    os.chdir(REPO)
    try:
        flags = ["--dry-run"] if dry_run else []
        return launcher.main(["--config", RECIPE, f"output_dir={out}", *flags, *overrides])
    finally:
        os.chdir(previous)
        logging.getLogger("sisu").handlers.clear()  # setup_logging bound them to pytest's captured stdout


def _files(out):
    return {name: (out / name).read_text(encoding="utf-8") for name in OUTPUTS}


def _progress_keys(out):
    return [json.loads(line)["key"] for line in (out / "progress.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The tiny recipe with its default (strict) filters, run once in this process."""
    out = tmp_path_factory.mktemp("translate") / "one_rank"
    capture = io.StringIO()
    with contextlib.redirect_stdout(capture):
        assert _translate_here(out) == 0
    return out, capture.getvalue()


def test_tiny_model_end_to_end(reference):
    out, stdout = reference
    report = json.loads((out / "report.json").read_text())
    assert report["items_in"] == 6 and report["segments"] > 20
    assert report["items_out"] + report["removed"] == 6
    assert sum(report["removed_by_reason"].values()) == report["removed"]
    # a random model never stops within its budget, and random bytes are not Finnish of the right length
    assert report["items_out"] < 6 and report["removed_by_reason"]["budget_cut"] >= 1
    assert report["flagged_by_reason"]["length_ratio"] >= 1
    assert "6 items in" in stdout and "length_ratio" in stdout and "items/s" in stdout and "eta" in stdout
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == report["removed"] and all(row["reasons"] for row in rejected)
    originals, _ = load_source(SourceConfig(path=str(REPO / "data/samples/chat_en.jsonl"), format="messages"))
    by_id = {r.source_id: r for r in originals}
    chats = [row for row in rejected if "messages" in row]
    chats += [json.loads(line) for line in (out / "chat_en.fi.jsonl").read_text().splitlines()]
    assert len(chats) == 4
    for row in chats:
        original = by_id[row["source_id"]]  # pairs with its original by source_id
        assert row["lang"] == "fi"
        assert [m["orig_content"] for m in row["messages"]] == [m["content"] for m in original.messages]
        assert [m["role"] for m in row["messages"]] == [m["role"] for m in original.messages]
        for message in row["messages"]:  # code blocks survive verbatim
            for block in message["orig_content"].split("```")[1::2]:
                assert f"```{block}```" in message["content"]
    assert any("```" in m["orig_content"] for row in chats for m in row["messages"])
    pairs = [row for row in rejected if "chosen" in row]
    pairs += [json.loads(line) for line in (out / "helpsteer2_en.fi.jsonl").read_text().splitlines()]
    assert len(pairs) == 2 and all(set(row) >= {"orig_chosen", "orig_rejected", "prompt"} for row in pairs)


def test_kill_and_restart_neither_duplicates_nor_loses(reference, tmp_path):
    ref_out, _ = reference
    out = tmp_path / "killed"
    killed = _translate(out, check=False, SISU_DEBUG_KILL_AFTER_ROUNDS="1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert len(_progress_keys(out)) == 2 and not (out / "report.json").exists()
    capture = io.StringIO()
    with contextlib.redirect_stdout(capture):
        assert _translate_here(out) == 0
    assert "2 of 6 items already in" in capture.getvalue()
    keys = _progress_keys(out)
    assert len(keys) == 6 and len(set(keys)) == 6
    assert _files(out) == _files(ref_out)


def test_two_ranks_write_the_same_outputs(reference, tmp_path):
    ref_out, _ = reference
    out = tmp_path / "two_ranks"
    _translate(out, nproc=2)
    assert _files(out) == _files(ref_out)


def test_two_ranks_sharded_with_fsdp_write_the_same_outputs(reference, tmp_path):
    """sharding=fsdp: the model is split over the ranks, which translate in lockstep (an idle rank in the last
    round decodes a dummy), and write what one rank with a full model writes."""
    ref_out, _ = reference
    out = tmp_path / "two_ranks_fsdp"
    proc = _translate(out, "sharding=fsdp", nproc=2)
    assert "translate: 6 items in 3 chunks of <= 2" in proc.stdout + proc.stderr  # an idle rank in round 2
    assert _files(out) == _files(ref_out)


def test_dry_run_and_user_errors_are_one_line(reference, tmp_path, capsys):
    ref_out, _ = reference
    assert _translate_here(tmp_path / "dry", dry_run=True) == 0
    out = capsys.readouterr().out
    assert "config valid" in out and "6 items" in out and out.rstrip().endswith("Finnish:")
    assert not (tmp_path / "dry").exists()
    assert _translate_here(tmp_path / "x", "sources.0.path=missing.jsonl") == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: missing.jsonl: file not found"]
    # continuing a run with other cleaning settings is refused instead of mixing two runs
    assert _translate_here(ref_out, "cleaning.length_ratio.enabled=false") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds translations made with different settings (cleaning): use another" in err[0]


def test_cached_prefix_and_batch_size_do_not_change_translations():
    import torch
    from transformers import AutoTokenizer

    from data.translate.config import TranslatePromptConfig
    from data.translate.prompt import FewShotPrompt
    from eval.translation.translator import ModelTranslator
    from runtime.model import build_model
    from runtime.settings import ModelConfig

    torch.manual_seed(1)
    spec = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}
    spec.update(num_attention_heads=4, num_key_value_heads=2, vocab_size=258, tie_word_embeddings=False)
    model = build_model(ModelConfig(init_config=spec)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(REPO / "recipes/test/tokenizer"))
    prompt = FewShotPrompt.from_config(TranslatePromptConfig(), source_lang="en", target_lang="fi")
    segments = ["Good morning.", "Bake the pasties for 12 minutes.", "Why?", "Rye flour, water and salt."]

    def translate(*, cache_prefix, batch_size):
        translator = ModelTranslator(
            model,
            tokenizer,
            prompt,
            batch_size=batch_size,
            max_new_tokens=6,
            length_factor=1.0,
            extra_new_tokens=6,
            cache_prefix=cache_prefix,
            device=torch.device("cpu"),
        )
        assert (translator.prefix is not None) == cache_prefix
        return translator(segments)

    expected = translate(cache_prefix=False, batch_size=4)
    assert any(expected)
    assert translate(cache_prefix=True, batch_size=4) == expected
    assert translate(cache_prefix=True, batch_size=1) == expected
