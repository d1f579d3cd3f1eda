"""The paper's own path on a tiny stand-in: a random-init BLOOM (ALiBi, like Poro-34B) whose tokenizer has no chat
template and no ChatML markers, trained with `data.template: chatml` and no attention setting.

SFT packed equals unpacked; a 2-process packed run exports a model that carries its template, serves with the KV
cache and stops at <|im_end|>; `launch/eval.py` takes that export with nothing but model.path; packed DPO from it
starts at ln 2.
"""

from __future__ import annotations

import json
import math

import pytest
from harness import read_metrics, run_job
from safetensors import safe_open

SFT = "recipes/test/tiny_bloom_sft.yaml"
STEPS = 4


def _launch(script, *args, nproc=1):
    return run_job(script, None, *args, nproc=nproc)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("poro")
    common = [f"train.max_steps={STEPS}", f"data.cache_dir={root / 'cache'}", "checkpoint.every_steps=null"]
    unpacked, packed, packed_two = root / "unpacked", root / "packed", root / "packed_two"
    logs = {}
    logs["unpacked"] = _launch("launch/sft.py", "--config", SFT, f"output_dir={unpacked}", *common)
    _launch("launch/sft.py", "--config", SFT, f"output_dir={packed}", "data.packing=true", *common)
    _launch(
        "launch/sft.py",
        "--config",
        SFT,
        f"output_dir={packed_two}",
        "data.packing=true",
        *common,
        nproc=2,
    )
    return {"root": root, "unpacked": unpacked, "packed": packed, "packed_two": packed_two, "logs": logs}


def test_recipe_names_no_attention_and_runs_on_sisus_alibi_sdpa(runs):
    stdout = runs["logs"]["unpacked"].stdout
    assert "attention: alibi_sdpa" in stdout
    assert "chat template: chatml (end of turn '<|im_end|>'); markers added as tokens [258, 259]" in stdout


def test_packed_sft_losses_equal_unpacked(runs):
    unpacked, packed, packed_two = (read_metrics(runs[k]) for k in ("unpacked", "packed", "packed_two"))
    assert len(unpacked) == len(packed) == len(packed_two) == STEPS
    for a, b, c in zip(unpacked, packed, packed_two):
        assert a["num_tokens"] == b["num_tokens"] == c["num_tokens"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert c["loss"] == pytest.approx(a["loss"], rel=1e-5)
    assert packed[0]["padding_efficiency"] > unpacked[0]["padding_efficiency"]


def test_two_process_packed_export_serves_as_trained(runs):
    from transformers import AutoTokenizer

    final = runs["packed_two"] / "final"
    config = json.loads((final / "config.json").read_text())
    assert config["model_type"] == "bloom" and config["use_cache"] is True
    assert config["dtype"] == "float32"  # the compute dtype on CPU (bf16 under GPU mixed precision)
    assert config["vocab_size"] == 260  # the base vocabulary plus <|im_start|> and <|im_end|>
    tokenizer = AutoTokenizer.from_pretrained(str(final))
    assert "<|im_start|>" in tokenizer.chat_template and len(tokenizer) == 260
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
    )
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    generation = json.loads((final / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [tokenizer.eos_token_id, end_of_turn]
    with safe_open(str(final / "model.safetensors"), "pt") as weights:
        embedding = weights.get_tensor("transformer.word_embeddings.weight")
    assert embedding.shape == (260, 64)
    state = json.loads(
        (runs["packed_two"] / "checkpoints" / f"step_{STEPS}" / "trainer_state.json").read_text()
    )
    assert state["chat_template"]["added_tokens"] == {"<|im_start|>": 258, "<|im_end|>": 259}


def test_eval_takes_the_export_with_model_path_alone(repo, runs):
    final = runs["packed_two"] / "final"
    out = runs["root"] / "eval"
    proc = _launch(
        "launch/eval.py",
        "--config",
        "recipes/test/tiny_eval.yaml",
        f"model.path={final}",
        f"output_dir={out}",
    )
    assert "chat template: tokenizer; generation stops at token ids [257, 259]" in proc.stdout
    for bench in ("ifeval_en", "ifeval_fi"):
        scores = json.loads((out / bench / "scores.json").read_text())
        assert scores["benchmark"] == bench and 0.0 <= scores["inst_level_strict_acc"] <= 1.0
        rows = (out / bench / "responses.jsonl").read_text().splitlines()
        assert len(rows) == 6 and all("<|im_end|>" not in json.loads(r)["response"] for r in rows)


def test_packed_dpo_from_the_export_starts_at_ln2(repo, runs):
    final = runs["packed_two"] / "final"
    out = runs["root"] / "dpo"
    _launch(
        "launch/dpo.py",
        "--config",
        "recipes/test/tiny_dpo.yaml",
        f"model.path={final}",
        "model.init_config=null",
        "model.tokenizer=null",
        "data.template=chatml",
        "data.packing=true",
        "train.max_steps=2",
        f"output_dir={out}",
        f"data.cache_dir={runs['root'] / 'cache'}",
    )
    first = read_metrics(out)[0]
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
