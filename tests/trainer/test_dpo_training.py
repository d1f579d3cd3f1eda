"""DPO runs of the tiny recipe: ln 2 start, live == precompute (also across a resume), rank parity, frozen reference."""

import math
import os

import pytest
import torch
from harness import REPO, read_metrics, run_job

TINY = "recipes/test/tiny_dpo.yaml"
STEPS = 4


def _dpo(out, *overrides, nproc=1, env=None, check=True):
    return run_job("launch/dpo.py", TINY, f"output_dir={out}", f"train.max_steps={STEPS}",
                   f"data.cache_dir={out.parent / 'cache'}", *overrides, nproc=nproc, env=env, check=check)  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpo")
    _dpo(root / "live", "reference.mode=live")
    _dpo(root / "pre", "reference.mode=precompute")
    return root


def test_first_step_is_ln2_and_metrics_are_logged(runs):
    first = read_metrics(runs / "live")[0]
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    for key in (
        "rewards/chosen",
        "rewards/rejected",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
        "lr",
        "grad_norm",
        "pairs_per_second",
        "tokens_per_second",
        "num_pairs",
    ):
        assert key in first
    assert first["num_pairs"] == 8
    assert first["logps/chosen"] < 0


def test_live_and_precompute_give_the_same_losses(runs):
    live, pre = read_metrics(runs / "live"), read_metrics(runs / "pre")
    assert len(live) == len(pre) == STEPS
    for a, b in zip(live, pre):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-6)
        assert a["rewards/margins"] == pytest.approx(b["rewards/margins"], rel=1e-3, abs=1e-4)
    assert len(list((runs / "pre" / "reference_logps").glob("*.pt"))) == 1
    assert not (runs / "live" / "reference_logps").exists()


def test_precompute_resume_reuses_reference_and_matches(runs):
    out = runs / "pre_killed"
    killed = _dpo(
        out,
        "reference.mode=precompute",
        "checkpoint.every_steps=2",
        env={"SISU_DEBUG_SIGKILL_AFTER_STEP": "3"},
        check=False,
    )
    assert killed.returncode == -9
    resumed = _dpo(out, "reference.mode=precompute", "checkpoint.every_steps=2")
    assert "reference log-probs: reusing" in resumed.stdout + resumed.stderr
    assert [m["loss"] for m in read_metrics(out)] == [m["loss"] for m in read_metrics(runs / "pre")]


def test_one_process_with_accumulation_equals_two_processes(runs):
    out = runs / "two"
    _dpo(out, "reference.mode=live", nproc=2)
    for a, b in zip(read_metrics(runs / "live"), read_metrics(out)):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-7)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)


def test_packed_pairs_keep_the_losses_in_every_mode(runs):
    """Packed (prompt shared by both completions, several pairs per row): the same losses and rewards as
    unpacked, live or precomputed, on 1 or 2 processes (packed steps can need different numbers of micro-batches
    per rank, evened out with filler batches)."""
    unpacked = read_metrics(runs / "live")
    for name, overrides, nproc in [
        ("packed_live", ["reference.mode=live"], 1),
        ("packed_pre", ["reference.mode=precompute"], 1),
        ("packed_two", ["reference.mode=live"], 2),
    ]:
        packed = read_metrics(_dpo(runs / name, "data.packing=true", *overrides, nproc=nproc) and runs / name)
        assert [m["num_pairs"] for m in packed] == [m["num_pairs"] for m in unpacked]
        for a, b in zip(unpacked, packed):
            assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-6), name
            assert b["rewards/margins"] == pytest.approx(a["rewards/margins"], rel=1e-3, abs=1e-4), name
            assert b["logps/chosen"] == pytest.approx(a["logps/chosen"], rel=1e-5), name
            assert b["padding_efficiency"] > a["padding_efficiency"], name
            # the shared prompt is computed once per pair: fewer real tokens go through the model
            assert b["tokens_per_second"] * b["step_seconds"] < a["tokens_per_second"] * a["step_seconds"]


def test_end_token_is_inside_the_logps_when_eos_is_pad(tiny_tokenizer):
    from data.collate import collate_preference
    from data.tokenize import PreferenceExample
    from runtime.model import build_model
    from runtime.settings import ModelConfig
    from trainer.dpo import pair_logps

    eos = tiny_tokenizer.eos_token_id
    assert eos == tiny_tokenizer.pad_token_id
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(
            init_config={
                "model_type": "llama",
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "vocab_size": 258,
            }
        )
    )
    example = PreferenceExample((256, 10, 11), (20, eos), (30, 31, 32, eos), "p", "en")
    batch = collate_preference([example], pad_id=tiny_tokenizer.pad_token_id)
    chosen, rejected = pair_logps(model, batch)
    logits = model(input_ids=batch["input_ids"]).logits.float()
    logp = torch.log_softmax(logits, -1)
    # chosen row: prompt (3 tokens) + [20, eos]; positions 2 and 3 predict 20 and eos
    manual_chosen = logp[0, 2, 20] + logp[0, 3, eos]
    manual_rejected = logp[1, 2, 30] + logp[1, 3, 31] + logp[1, 4, 32] + logp[1, 5, eos]
    torch.testing.assert_close(chosen[0], manual_chosen)
    torch.testing.assert_close(rejected[0], manual_rejected)


def test_long_pairs_are_truncated_and_counted(tiny_tokenizer):
    from data.config import DataConfig, SourceConfig
    from data.pipeline import build_dataset

    cfg = DataConfig(
        sources=[
            SourceConfig(
                path=os.path.join(REPO, "data/samples/helpsteer2_en.jsonl"), format="helpsteer2", lang="en"
            )
        ],
        max_prompt_length=64,
    )
    full = build_dataset(cfg, tokenizer=tiny_tokenizer, max_seq_len=100_000, use_cache=False)
    cut = build_dataset(cfg, tokenizer=tiny_tokenizer, max_seq_len=256, use_cache=False)
    too_long = sum(1 for e in full.dataset if e.length > 256)
    assert too_long > 0
    assert cut.stats.num_truncated == too_long
    assert all(e.length <= 256 and len(e.prompt_ids) <= 256 for e in cut.dataset)
    assert f"truncated {too_long}" in " ".join(cut.summary_lines())


def test_reference_never_changes_and_gets_no_gradient(tmp_path, monkeypatch):
    from runtime.config import load_config
    from trainer.dpo import make_dpo_task
    from trainer.jobs import DPOConfig
    from trainer.trainer import Trainer

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(REPO)
    cfg = load_config(
        DPOConfig,
        TINY,
        [
            f"output_dir={tmp_path}",
            "train.max_steps=2",
            "reference.mode=live",
            f"data.cache_dir={tmp_path / 'cache'}",
            "checkpoint.save_final=false",
        ],
    )
    trainer = Trainer(cfg, make_task=lambda **kw: make_dpo_task(cfg, **kw), expect="preference")

    def full(param):
        return param.full_tensor() if hasattr(param, "full_tensor") else param

    try:
        trainer.setup()
        reference = trainer.objective.reference
        before = {n: full(p).clone() for n, p in reference.named_parameters()}
        policy_before = {n: full(p).clone() for n, p in trainer.model.named_parameters()}
        trainer.train()
        assert not reference.training
        for name, param in reference.named_parameters():
            assert not param.requires_grad and param.grad is None
            assert torch.equal(full(param), before[name])
        changed = [not torch.equal(full(p), policy_before[n]) for n, p in trainer.model.named_parameters()]
        assert all(changed)  # while the policy moved
        assert all(
            id(p) not in {id(q) for q in reference.parameters()}
            for group in trainer.optimizer.param_groups
            for p in group["params"]
        )
    finally:
        trainer.close()
