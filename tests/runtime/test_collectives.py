"""Collectives by construction: every tensor sisu hands to torch.distributed is on the process group's device.

On a GPU the process group is NCCL/RCCL, which serves no CPU tensor; on this CPU machine gloo serves CPU tensors
only, so a `torch.tensor([...])` handed to a collective passes every CPU test and crashes the first multi-GPU
step. Two checks make that impossible without a GPU: the source of every sisu module calls torch.distributed
collectives only inside runtime/distributed.py, and those helpers build or move every tensor onto the device
recorded at init, whatever device the caller's values are on ("meta" stands in for a GPU this machine lacks).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from harness import REPO

from runtime import distributed

PACKAGES = ("runtime", "trainer", "data", "losses", "eval", "planner", "launch", "bench")
HELPER = REPO / "runtime" / "distributed.py"
COLLECTIVES = {
    "all_reduce",
    "all_reduce_coalesced",
    "all_gather",
    "all_gather_into_tensor",
    "all_gather_object",
    "all_to_all",
    "all_to_all_single",
    "barrier",
    "batch_isend_irecv",
    "broadcast",
    "broadcast_object_list",
    "gather",
    "gather_object",
    "irecv",
    "isend",
    "monitored_barrier",
    "recv",
    "reduce",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "scatter",
    "scatter_object_list",
    "send",
}


def _distributed_aliases(tree: ast.AST) -> tuple[set[str], set[str]]:
    """Names bound to torch.distributed (modules) and to its collectives (functions) in one module."""
    modules, functions = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "torch.distributed":
                    modules.add(alias.asname or "torch")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                if node.module == "torch" and alias.name == "distributed":
                    modules.add(alias.asname or "distributed")
                if node.module.startswith("torch.distributed") and alias.name in COLLECTIVES:
                    functions.add(alias.asname or alias.name)
    return modules, functions


def collective_calls(path: Path) -> list[str]:
    """`file:line name` of every torch.distributed collective called in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules, functions = _distributed_aliases(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = None
        if isinstance(func, ast.Attribute) and func.attr in COLLECTIVES:
            base = func.value
            # dist.all_reduce(...), torch.distributed.all_reduce(...)
            if isinstance(base, ast.Name) and base.id in modules:
                name = func.attr
            elif isinstance(base, ast.Attribute) and base.attr == "distributed":
                name = func.attr
        elif isinstance(func, ast.Name) and func.id in functions:
            name = func.id
        if name is not None:
            where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
            found.append(f"{where}:{node.lineno} {name}")
    return found


def test_no_module_outside_the_helper_calls_a_collective():
    calls = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if path != HELPER:
                calls += collective_calls(path)
    assert calls == [], "call the helpers in runtime/distributed.py instead:\n" + "\n".join(calls)
    assert collective_calls(HELPER), "the scan found no collective in the helper itself: the scan is broken"


def test_the_scan_finds_direct_calls(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import torch\nimport torch.distributed as dist\nfrom torch.distributed import all_gather_object as g\n"
        "dist.all_reduce(torch.tensor([1]))\ntorch.distributed.barrier()\ng([None], 1)\n",
        encoding="utf-8",
    )
    assert [c.split()[1] for c in collective_calls(sample)] == ["all_reduce", "barrier", "g"]


class _Recorder:
    """Stands in for torch.distributed's collectives on a 2-rank group: records the devices it is handed."""

    def __init__(self) -> None:
        self.devices: list[torch.device] = []

    def __call__(self, tensor: torch.Tensor, *args, **kwargs) -> None:
        self.devices.append(tensor.device)


@pytest.fixture
def fake_gpu_group(monkeypatch):
    """A 2-rank group whose backend serves only `meta` tensors (a device this machine has no kernels for)."""
    recorder = _Recorder()
    monkeypatch.setattr(distributed, "_COLLECTIVE_DEVICE", torch.device("meta"))
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(dist, "all_reduce", recorder)
    monkeypatch.setattr(dist, "broadcast", recorder)
    return recorder


def test_helpers_put_every_tensor_on_the_group_device(fake_gpu_group):
    out = distributed.reduce_tensor(torch.ones(3, 2, dtype=torch.float64))  # a CPU tensor in
    assert out.device.type == "meta" and out.shape == (3, 2)
    stacked = distributed.stack_values([1, 2.5, torch.tensor(3.0), torch.tensor(4, dtype=torch.int32)])
    assert stacked.device.type == "meta" and stacked.dtype == torch.float64 and stacked.shape == (4,)
    numbers = distributed.stack_values([1, 2])
    assert numbers.device.type == "meta"
    with pytest.raises(NotImplementedError):  # values come back with .tolist(), which meta cannot do
        distributed.reduce_values([1, 2.0, torch.tensor(0.5)], op="max")
    with pytest.raises(NotImplementedError):  # the CPU tensor is broadcast through a meta copy
        distributed.broadcast_(torch.zeros(4), src=0)
    assert fake_gpu_group.devices and all(d.type == "meta" for d in fake_gpu_group.devices)
    assert len(fake_gpu_group.devices) == 3


def test_reduce_rejects_unknown_ops():
    with pytest.raises(ValueError, match="unknown reduce op 'avg'"):
        distributed.reduce_values([1.0], op="avg")


def test_collective_device_is_recorded_at_init_and_cleared_at_teardown():
    info = distributed.init_distributed(backend="gloo")
    try:
        assert distributed.collective_device() == info.device == torch.device("cpu")
        assert distributed.reduce_values([2, 3.5]) == [2.0, 3.5]
    finally:
        distributed.teardown()
    assert distributed._COLLECTIVE_DEVICE is None


def test_torch_without_the_fsdp2_apis_stops_with_one_line(monkeypatch):
    from torch.distributed.fsdp import FSDPModule

    monkeypatch.delattr(FSDPModule, "set_force_sum_reduction_for_comms")
    monkeypatch.setattr(torch, "__version__", "2.7.1")
    with pytest.raises(ValueError) as info:
        distributed.check_torch_version()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        "sisu needs torch >= 2.8 (FSDP2's FSDPModule.set_force_sum_reduction_for_comms)"
    )
    assert "torch 2.7.1" in message


def test_setup_cfg_declares_the_same_minimum():
    text = (REPO / "setup.cfg").read_text(encoding="utf-8")
    assert f"torch>={distributed.TORCH_MINIMUM}\n" in text


def test_unknown_backend_is_a_user_error():
    with pytest.raises(ValueError, match="unknown distributed backend 'mpi'"):
        distributed.init_distributed(backend="mpi")
