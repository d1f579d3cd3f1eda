"""No sisu code in the micro-batch loop asks the device for a value.

On a GPU, `float(t)`, `t.item()`, `t.tolist()`, `t.cpu()`, `bool(t)` or a boolean-mask index make the host wait
for every queued kernel, so a sync per micro-batch serialises the step. On this CPU machine nothing can be timed,
but every such call can be caught: the tensor methods that force a sync are wrapped while the trainer's
`_forward_backward` runs, and each call made directly by a line of sisu's own packages is recorded (calls made
inside transformers or torch are theirs, not ours). SFT and DPO, packed and unpacked, chunked head and not.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from harness import REPO

from runtime.config import load_config
from trainer.dpo import make_dpo_task
from trainer.jobs import DPOConfig, SFTConfig
from trainer.sft import make_sft_task
from trainer.trainer import Trainer

SISU = tuple(str(REPO / package) + "/" for package in ("trainer", "data", "losses", "eval"))
SYNCING = ("item", "tolist", "__float__", "__int__", "__bool__", "cpu", "numpy", "nonzero")


def _sisu_caller() -> str | None:
    """The line that called the tensor method, when it is sisu's (two frames up: this helper, the wrapper)."""
    frame = sys._getframe(2)
    name = frame.f_code.co_filename
    if name.startswith(SISU):
        return f"{Path(name).relative_to(REPO)}:{frame.f_lineno} ({frame.f_code.co_name})"
    return None


@pytest.fixture
def sync_recorder(monkeypatch):
    """Returns (calls, arm): while armed, every syncing tensor call made from sisu code is recorded."""
    calls: list[str] = []
    state = {"armed": False}

    def wrap(name):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            if state["armed"]:
                caller = _sisu_caller()
                if caller is not None:
                    calls.append(f"{name} from {caller}")
            return original(self, *args, **kwargs)

        return wrapper

    for name in SYNCING:
        monkeypatch.setattr(torch.Tensor, name, wrap(name))
    original_getitem = torch.Tensor.__getitem__

    def getitem(self, index):
        if state["armed"] and isinstance(index, torch.Tensor) and index.dtype == torch.bool:
            caller = _sisu_caller()
            if caller is not None:
                calls.append(f"boolean index from {caller}")
        return original_getitem(self, index)

    monkeypatch.setattr(torch.Tensor, "__getitem__", getitem)
    return calls, state


def _run_one_step(tmp_path, config_cls, recipe, make_task, kind, overrides, sync_recorder):
    calls, state = sync_recorder
    cfg = load_config(
        config_cls,
        str(REPO / recipe),
        [
            f"output_dir={tmp_path / 'run'}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "train.max_steps=2",
            *overrides,
        ],
    )
    trainer = Trainer(cfg, make_task=lambda **kw: make_task(cfg, **kw), expect=kind)
    original = trainer._forward_backward

    def armed(*args, **kwargs):
        state["armed"] = True
        try:
            return original(*args, **kwargs)
        finally:
            state["armed"] = False

    trainer._forward_backward = armed
    try:
        trainer.setup()
        stats, _lr = trainer._optimizer_step(0, 0, 0)
    finally:
        trainer.close()
    assert stats.finite and not stats.stop and stats.loss > 0
    return calls


@pytest.mark.parametrize(
    "overrides",
    [[], ["data.packing=true"], ["train.loss_chunk_size=null"], ["train.neftune_alpha=5"]],
    ids=["unpacked", "packed", "full-logits", "neftune"],
)
def test_sft_micro_batch_loop_never_syncs(tmp_path, overrides, sync_recorder):
    calls = _run_one_step(
        tmp_path, SFTConfig, "recipes/test/tiny_sft.yaml", make_sft_task, "sft", overrides, sync_recorder
    )
    assert calls == []


@pytest.mark.parametrize(
    "overrides",
    [[], ["data.packing=true"], ["reference.mode=precompute"], ["train.loss_chunk_size=null"]],
    ids=["live", "packed", "precompute", "full-logits"],
)
def test_dpo_micro_batch_loop_never_syncs(tmp_path, overrides, sync_recorder):
    calls = _run_one_step(
        tmp_path,
        DPOConfig,
        "recipes/test/tiny_dpo.yaml",
        make_dpo_task,
        "preference",
        overrides,
        sync_recorder,
    )
    assert calls == []


def test_the_recorder_catches_a_sync(tmp_path, sync_recorder, monkeypatch):
    """The old trainer's `float(loss_sum.detach())` per micro-batch, put back: the recorder must see it."""
    from trainer import objectives

    original = objectives.SFTObjective.loss

    def syncing_loss(self, model, batch):
        loss_sum, stats = original(self, model, batch)
        stats["loss_sum"] = torch.tensor(float(loss_sum.detach()))
        return loss_sum, stats

    monkeypatch.setattr(objectives.SFTObjective, "loss", syncing_loss)
    monkeypatch.setattr(sys.modules[__name__], "SISU", (*SISU, str(REPO / "tests") + "/"))
    calls = _run_one_step(
        tmp_path, SFTConfig, "recipes/test/tiny_sft.yaml", make_sft_task, "sft", [], sync_recorder
    )
    assert calls and all(c.startswith("__float__ from tests/trainer/test_step_syncs.py") for c in calls)
