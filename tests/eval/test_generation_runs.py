"""launch/eval.py on a tiny random model: rank/batch invariance, resume, and tiny SFT -> eval -> report."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from harness import REPO, job_env, run_job

TINY_EVAL = "recipes/test/tiny_eval.yaml"


def _eval(model, out, *overrides, nproc=1):
    return run_job("launch/eval.py", TINY_EVAL, f"model.path={model}", f"output_dir={out}", *overrides, nproc=nproc)


def _responses(out, bench="ifeval_en"):
    return [json.loads(line) for line in (out / bench / "responses.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A random-init tiny Llama saved in Hugging Face format with the tiny ChatML tokenizer."""
    import torch
    from transformers import AutoTokenizer

    from runtime.model import build_model
    from runtime.settings import ModelConfig

    torch.manual_seed(0)
    model = build_model(
        ModelConfig(
            init_config={
                "model_type": "llama",
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "vocab_size": 258,
                "tie_word_embeddings": True,
            }
        )
    )
    path = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(os.path.join(REPO, "recipes/test/tokenizer")).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def reference_run(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "bs4"
    _eval(tiny_model, out, "generation.batch_size=4")
    return out


def test_outputs_and_scores(reference_run):
    rows = _responses(reference_run)
    assert len(rows) == 6
    assert all(set(r) == {"key", "prompt", "response", "language", "truncated"} for r in rows)
    source = [
        json.loads(line) for line in open(os.path.join(REPO, "..", "shared", "ifeval", "input_data.jsonl"))
    ]
    kept = [
        r
        for r in source
        if not any(
            i == "language:response_language" and kw.get("language") != "en"
            for i, kw in zip(r["instruction_id_list"], r["kwargs"])
        )
    ][:6]
    assert [r["key"] for r in rows] == [r["key"] for r in kept]  # original order after gathering
    scores = json.loads((reference_run / "ifeval_fi" / "scores.json").read_text())
    for key in (
        "inst_level_strict_acc",
        "prompt_level_loose_acc",
        "response_language_rate",
        "response_language_failed_keys",
        "per_category",
    ):
        assert key in scores
    verdicts = (reference_run / "ifeval_en" / "verdicts.jsonl").read_text().splitlines()
    assert len(verdicts) == 6
    assert (reference_run / "categories.png").is_file()


def test_same_responses_for_batch_sizes_and_ranks(tiny_model, reference_run, tmp_path):
    one = tmp_path / "bs1"
    _eval(tiny_model, one, "generation.batch_size=1")
    two = tmp_path / "two_ranks"
    _eval(tiny_model, two, "generation.batch_size=2", nproc=2)
    for bench in ("ifeval_en", "ifeval_fi"):
        expected = _responses(reference_run, bench)
        assert _responses(one, bench) == expected
        assert _responses(two, bench) == expected
    assert any(r["response"] for r in _responses(reference_run))  # not trivially empty


def test_interrupted_generation_resumes_without_redoing_work(tiny_model, reference_run, tmp_path):
    out = tmp_path / "resumed"
    (out / "ifeval_en").mkdir(parents=True)
    done = _responses(reference_run)[:3]
    marked = [dict(row, response=f"KEPT {row['key']}") for row in done]
    partial = "".join(json.dumps(row) + "\n" for row in marked) + '{"key": 99, "resp'  # cut by a kill
    (out / "ifeval_en" / "responses.jsonl").write_text(partial)
    # the record of the model that wrote them, as the interrupted run of the same model left it
    shutil.copy(reference_run / "ifeval_en" / "run.json", out / "ifeval_en" / "run.json")
    proc = _eval(tiny_model, out, "generation.batch_size=4")
    assert "3 of 6 prompts already in" in proc.stdout + proc.stderr
    rows = _responses(out)
    expected = _responses(reference_run)
    assert [r["key"] for r in rows] == [r["key"] for r in expected]
    assert [r["response"] for r in rows[:3]] == [f"KEPT {r['key']}" for r in done]  # not regenerated
    assert rows[3:] == expected[3:]


def test_tiny_sft_then_eval_then_report(tmp_path):
    sft_out = tmp_path / "sft"
    train = subprocess.run(
        [
            sys.executable,
            "launch/sft.py",
            "--config",
            "recipes/test/tiny_sft.yaml",
            f"output_dir={sft_out}",
            "train.max_steps=2",
            f"data.cache_dir={tmp_path / 'cache'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=job_env(),
        timeout=600,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    eval_out = tmp_path / "eval_sft"
    _eval(sft_out / "final", eval_out)
    report = tmp_path / "report.md"
    proc = subprocess.run(
        [sys.executable, "launch/report.py", str(eval_out), "--out", str(report)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    scores_en = json.loads((eval_out / "ifeval_en" / "scores.json").read_text())
    scores_fi = json.loads((eval_out / "ifeval_fi" / "scores.json").read_text())
    row = report.read_text().splitlines()[-1]
    assert row == (
        f"| eval_sft | {100 * scores_en['inst_level_strict_acc']:.2f} | "
        f"{100 * scores_fi['inst_level_strict_acc']:.2f} | "
        f"{100 * scores_fi['response_language_rate']:.2f} |"
    )


def test_fsdp_sharded_generation_matches(tiny_model, reference_run, tmp_path):
    out = tmp_path / "fsdp"
    _eval(tiny_model, out, "generation.batch_size=4", "sharding=fsdp", nproc=2)
    for bench in ("ifeval_en", "ifeval_fi"):
        assert _responses(out, bench) == _responses(reference_run, bench)


def test_generation_stops_at_the_end_of_turn_and_every_configured_eos(repo):
    """A single-token end of turn becomes a stop id, a multi-token one a stop string; every eos id of the
    model's generation config counts."""
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from eval.generate import stops_for

    tokenizer = AutoTokenizer.from_pretrained(str(repo / "recipes/test/tokenizer"))
    model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=[7, 9]))
    stops = stops_for(tokenizer, model, end_of_turn="<|im_end|>")
    assert stops.token_ids == (7, 9, 257) and stops.strings == ()
    base = AutoTokenizer.from_pretrained(str(repo / "recipes/test/tokenizer_base"))
    stops = stops_for(
        base, SimpleNamespace(generation_config=None), end_of_turn="<|im_end|>", strings=["###"]
    )
    assert stops.token_ids == (257,) and stops.strings == ("###", "<|im_end|>")


def test_eval_never_continues_responses_of_another_model(tiny_model, reference_run, tmp_path):
    """Model B evaluated into model A's folder: refused in one line, A's responses untouched; other decoding
    settings too. Responses cut at max_new_tokens are marked and counted."""
    from safetensors.torch import load_file, save_file

    other = tmp_path / "model_b"
    shutil.copytree(tiny_model, other)
    weights = load_file(other / "model.safetensors")
    save_file(
        {k: v + 0.01 if v.is_floating_point() else v for k, v in weights.items()}, other / "model.safetensors"
    )
    out = tmp_path / "shared_out"
    shutil.copytree(reference_run, out)
    before = (out / "ifeval_en" / "responses.jsonl").read_text()
    for overrides, what in (
        ([f"model.path={other}"], f"responses made with a different model ({tiny_model})"),
        ([f"model.path={tiny_model}", "generation.max_new_tokens=8"], "responses made with different decoding (max_new"),
    ):
        cmd = [sys.executable, "launch/eval.py", "--config", TINY_EVAL, f"output_dir={out}", *overrides]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=job_env(), timeout=600)
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(err) == 1, proc.stderr[-2000:]
        assert f"ifeval_en holds {what}" in err[0] and "delete" in err[0] and "responses.jsonl" in err[0]
    assert (out / "ifeval_en" / "responses.jsonl").read_text() == before
    # the same model and settings continue (nothing to do), and the counts of cut responses are reported
    _eval(tiny_model, out)
    scores = json.loads((out / "ifeval_en" / "scores.json").read_text())
    rows = _responses(out)
    assert scores["num_truncated"] == sum(r["truncated"] for r in rows) == len(scores["truncated_keys"])
    assert scores["num_truncated"] >= 1  # a random model rarely stops within tiny_eval's 24 new tokens
