"""Checkpoint checksums (trainer/integrity.py, trainer/checkpoint.py), in one process: every kind of damage is
found and named, what is loaded is what was checked, and a failed write leaves no half checkpoint."""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil

import pytest
import torch

from data.errors import SisuError
from runtime.distributed import init_distributed, teardown
from trainer import checkpoint as ckpt
from trainer import integrity


@pytest.fixture
def group():
    init_distributed(backend="gloo")
    yield
    teardown()


def _model_and_optimizer(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(3, 8)).sum().backward()
    optimizer.step()
    return model, optimizer


@pytest.fixture
def saved(group, tmp_path):
    """Checkpoints step_2 and step_4 of a small model, and the model they hold."""
    model, optimizer = _model_and_optimizer(0)
    root = tmp_path / "checkpoints"
    for step in (2, 4):
        ckpt.save_checkpoint(
            root,
            step=step,
            model=model,
            optimizer=optimizer,
            trainer_state={"step": step, "epoch": 0},
            keep=2,
        )
    return root, model


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_step(path):
    state = json.loads(path.read_text())
    path.write_text(json.dumps({**state, "step": 3}))


DAMAGE = {
    "flipped shard byte": ("__0_0.distcp", _flip_a_byte, "__0_0.distcp does not match its checksum"),
    "truncated shard": ("__0_0.distcp", lambda p: p.write_bytes(p.read_bytes()[:100]), "__0_0.distcp has 100 bytes"),
    "missing shard": ("__0_0.distcp", os.remove, "__0_0.distcp is missing"),
    "truncated rng": ("rng_rank0.safetensors", lambda p: p.write_bytes(p.read_bytes()[:50]),
                      "rng_rank0.safetensors has 50 bytes"),
    "edited trainer_state": ("trainer_state.json", _edit_step, "trainer_state.json has"),
    "broken trainer_state": ("trainer_state.json", lambda p: p.write_text("{"), "trainer_state.json has 1 bytes"),
    "missing trainer_state": ("trainer_state.json", os.remove, "trainer_state.json is missing"),
    "flipped metadata": (".metadata", _flip_a_byte, ".metadata does not match its checksum"),
    "missing manifest": ("checksums.json", os.remove, "checksums.json is missing"),
    "broken manifest": ("checksums.json", lambda p: p.write_text("[1"), "checksums.json is unreadable"),
    "manifest not a list of files": ("checksums.json", lambda p: p.write_text("[1]"),
                                     "checksums.json is not a version-1 checksum list"),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_every_kind_of_damage_is_found_and_named(saved, kind):
    root, _model = saved
    name, damage, message = DAMAGE[kind]
    assert ckpt.verify_checkpoint(root / "step_4", step=4)[0] is None
    damage(root / "step_4" / name)
    problem, verified = ckpt.verify_checkpoint(root / "step_4", step=4)
    assert verified is None and problem is not None and problem.startswith(message), problem
    assert ckpt.verify_checkpoint(root / "step_2", step=2)[0] is None  # the one before is untouched


def test_a_consistent_edit_of_the_step_is_found_by_the_directory_name(saved):
    """Even with the checksum list rewritten to match, a trainer_state of another step is refused."""
    root, _model = saved
    state_file = root / "step_4" / "trainer_state.json"
    _edit_step(state_file)
    manifest = json.loads((root / "step_4" / "checksums.json").read_text())
    data = state_file.read_bytes()
    manifest["files"]["trainer_state.json"] = integrity.digest_bytes(data)
    (root / "step_4" / "checksums.json").write_text(json.dumps(manifest))
    problem, _ = ckpt.verify_checkpoint(root / "step_4", step=4)
    assert problem == "trainer_state.json says step 3, the directory step 4"


def test_the_checked_checkpoint_loads_the_saved_model_and_rng(saved):
    root, model = saved
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    problem, verified = ckpt.verify_checkpoint(root / "step_4", step=4)
    assert problem is None
    other, other_optimizer = _model_and_optimizer(1)
    state = ckpt.load_checkpoint(root / "step_4", model=other, optimizer=other_optimizer, verified=verified)
    assert state == {"step": 4, "epoch": 0}
    for a, b in zip(model.parameters(), other.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(torch.rand(3), expected_draw)  # the RNG is the checkpoint's, not seed 123's


def test_metadata_swapped_after_the_check_never_runs(saved, tmp_path, monkeypatch):
    """The worst moment for a swap: `.metadata` replaced by a payload after the check, right before DCP loads.
    DCP gets the metadata parsed from the checked bytes and never opens the file."""
    root, model = saved
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    real_load = ckpt.dcp.load

    def swap_then_load(*args, **kwargs):
        (root / "step_4" / ".metadata").write_bytes(pickle.dumps(Payload()))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(ckpt.dcp, "load", swap_then_load)
    problem, verified = ckpt.verify_checkpoint(root / "step_4", step=4)
    assert problem is None
    other, other_optimizer = _model_and_optimizer(1)
    ckpt.load_checkpoint(root / "step_4", model=other, optimizer=other_optimizer, verified=verified)
    assert not marker.exists()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), other.parameters()))


def test_a_shard_replaced_while_it_is_loaded_stops_the_resume(saved, monkeypatch):
    root, _model = saved
    real_load = ckpt.dcp.load
    shard = root / "step_4" / "__0_0.distcp"

    def replace_then_load(*args, **kwargs):
        copy = shard.with_name("copy")
        shutil.copyfile(shard, copy)
        os.replace(copy, shard)  # same bytes, another file
        return real_load(*args, **kwargs)

    monkeypatch.setattr(ckpt.dcp, "load", replace_then_load)
    _problem, verified = ckpt.verify_checkpoint(root / "step_4", step=4)
    other, other_optimizer = _model_and_optimizer(1)
    with pytest.raises(SisuError, match=r"__0_0.distcp changed while it was being loaded"):
        ckpt.load_checkpoint(root / "step_4", model=other, optimizer=other_optimizer, verified=verified)


def _disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["shards", "rng", "trainer_state"])
def test_a_full_disk_while_saving_is_one_line_and_leaves_the_checkpoints_before(saved, monkeypatch, where):
    root, model = saved
    optimizer = torch.optim.AdamW(model.parameters())
    if where == "shards":
        monkeypatch.setattr(ckpt.FileSystemWriter, "write_data", _disk_full)
    elif where == "rng":
        monkeypatch.setattr(ckpt, "save_rng_state", _disk_full)
    else:
        monkeypatch.setattr(integrity, "write_manifest", _disk_full)
    with pytest.raises(SisuError) as refusal:
        ckpt.save_checkpoint(
            root, step=6, model=model, optimizer=optimizer, trainer_state={"step": 6}, keep=2
        )
    message = str(refusal.value)
    assert "\n" not in message
    assert message.startswith(
        f"could not write checkpoint {root / 'step_6'} (rank 0: [Errno 28] No space left"
    )
    assert "the checkpoints before it are intact (step_2, step_4)" in message
    assert sorted(p.name for p in root.iterdir()) == ["step_2", "step_4"]  # no step_6, no .step_6.tmp


def test_a_full_disk_during_export_is_one_line_and_keeps_the_previous_export(group, tmp_path, monkeypatch):
    from harness import REPO, tiny_model
    from transformers import AutoTokenizer

    model = tiny_model()
    tokenizer = AutoTokenizer.from_pretrained(REPO / "recipes/test/tokenizer")
    out = tmp_path / "final"
    ckpt.export_hf(model, out, tokenizer=tokenizer)
    before = sorted(p.name for p in out.iterdir())
    monkeypatch.setattr(ckpt, "save_safetensors", _disk_full)
    with pytest.raises(SisuError) as refusal:
        ckpt.export_hf(model, out, tokenizer=tokenizer)
    message = str(refusal.value)
    assert "\n" not in message and message.startswith(f"could not export {out} ([Errno 28] No space left")
    assert "the previous export in" in message
    assert sorted(p.name for p in out.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]  # no .final.tmp
