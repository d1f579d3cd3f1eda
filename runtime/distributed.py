"""Process-group runtime: torchrun (1..N nodes) or a plain single process, on GPU (CUDA/ROCm) or CPU."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from data.errors import ConfigError, SisuError

logger = logging.getLogger("sisu")

# Variables torchrun sets for every worker; all or none must be present.
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def num_nodes(self) -> int:
        return max(1, self.world_size // max(1, self.local_world_size))


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer") from None


def read_launch_env() -> tuple[int, int, int, int] | None:
    """(rank, world_size, local_rank, local_world_size) from torchrun's variables; None when not launched.

    Raises ValueError when the environment is only partly set (a hand-made launcher missing a variable).
    """
    present = [name for name in TORCHRUN_VARS if name in os.environ]
    if not present:
        return None
    missing = [name for name in TORCHRUN_VARS if name not in os.environ]
    if missing:
        raise ConfigError(
            f"incomplete torchrun environment: {', '.join(present)} set but {', '.join(missing)} missing; "
            "launch with torchrun (or set all of " + ", ".join(TORCHRUN_VARS) + ")"
        )
    rank, world, local_rank, local_world = (
        _env_int("RANK"),
        _env_int("WORLD_SIZE"),
        _env_int("LOCAL_RANK"),
        _env_int("LOCAL_WORLD_SIZE"),
    )
    if not (0 <= rank < world and 0 <= local_rank < local_world):
        raise ConfigError(
            f"inconsistent torchrun environment: RANK={rank} WORLD_SIZE={world} LOCAL_RANK={local_rank}"
        )
    return rank, world, local_rank, local_world


def restart_count() -> int:
    """How many times torchrun has restarted the workers of this job (0 on the first attempt and without torchrun)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT") or 0)


def attempt_store(world: int, timeout: datetime.timedelta) -> dist.Store | None:
    """The rendezvous store of this attempt of the worker group; None: torch's own env:// store.

    Under torchrun's agent store (TORCHELASTIC_USE_AGENT_STORE, static rendezvous among others) every attempt
    meets on the same TCPStore, which keeps the keys of the attempts before: a restarted group then reads a killed
    worker's gloo addresses and fails to connect ("Connection refused") or waits for it. Keys under a prefix per
    attempt start each attempt clean.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != str(True):
        return None
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world, is_master=False, timeout=timeout
    )
    return dist.PrefixStore(f"sisu/attempt_{restart_count()}", store)


def select_device(local_rank: int, *, prefer_cpu: bool = False, share: bool = False) -> torch.device:
    """CUDA device `local_rank` when a GPU is present (ROCm builds also report as cuda), else CPU.

    `share`: more local ranks than GPUs is allowed and ranks take the GPUs round-robin (the `cuda:gloo` test
    backend; NCCL refuses two ranks on one GPU).
    """
    if not prefer_cpu and torch.cuda.is_available():
        count = torch.cuda.device_count()
        if local_rank >= count and not share:
            raise ConfigError(f"LOCAL_RANK={local_rank} but only {count} GPU(s) are visible on this node")
        index = local_rank % count
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


BACKENDS = ("auto", "nccl", "gloo", "cuda:gloo")


def init_distributed(
    *, backend: str = "auto", timeout_minutes: float = 30.0, prefer_cpu: bool = False
) -> DistInfo:
    """Start the process group (also for a single plain process, so FSDP2 always has a mesh).

    Backends: auto (NCCL/RCCL on GPU, gloo on CPU), nccl, gloo, or `cuda:gloo`: gloo serving CUDA tensors only,
    ranks sharing GPUs, so that several ranks on one GPU fail on any CPU tensor handed to a collective, as NCCL
    does (bench/gpu_check.py).
    """
    global _COLLECTIVE_DEVICE
    check_torch_version()
    if backend not in BACKENDS:
        raise ConfigError(f"unknown distributed backend {backend!r}; expected {', '.join(BACKENDS)}")
    launch = read_launch_env()
    rank, world, local_rank, local_world = launch if launch is not None else (0, 1, 0, 1)
    device = select_device(local_rank, prefer_cpu=prefer_cpu, share=backend == "cuda:gloo")
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend in ("nccl", "cuda:gloo") and device.type != "cuda":
        raise ConfigError(f"distributed.backend={backend} needs a GPU; none is visible (use gloo or auto)")
    timeout = datetime.timedelta(minutes=timeout_minutes)
    if not dist.is_initialized():
        if launch is None:
            # A plain `python launch/x.py` run: a one-rank group on an in-memory store, no ports needed.
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
        else:
            kwargs = {"device_id": device} if backend == "nccl" else {}
            dist.init_process_group(
                backend,
                store=attempt_store(world, timeout),
                rank=rank,
                world_size=world,
                timeout=timeout,
                **kwargs,
            )
    _COLLECTIVE_DEVICE = device
    info = DistInfo(rank, world, local_rank, local_world, device, backend)
    if info.is_main:
        hip = getattr(torch.version, "hip", None)
        platform = (
            f"ROCm/HIP {hip}" if hip else (f"CUDA {torch.version.cuda}" if device.type == "cuda" else "CPU")
        )
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        if restart_count():
            logger.warning(
                "torchrun restarted the workers (restart %d); resuming from the newest checkpoint",
                restart_count(),
            )
        logger.info(
            "world size %d (%d node(s) x %d), backend %s (%s), device %s [%s], torch %s",
            world,
            info.num_nodes,
            local_world,
            backend if not (hip and backend == "nccl") else "nccl (RCCL)",
            platform,
            device,
            name,
            torch.__version__,
        )
    return info


# The FSDP2 APIs sisu relies on and the torch release that first has all of them (declared in setup.cfg).
TORCH_MINIMUM = "2.8"
REQUIRED_FSDP_METHODS = ("set_gradient_divide_factor", "set_force_sum_reduction_for_comms")


def check_torch_version() -> None:
    """One-line error when the installed torch lacks the FSDP2 APIs sisu uses (SUM-only gradient reduction)."""
    from torch.distributed.fsdp import FSDPModule

    missing = [name for name in REQUIRED_FSDP_METHODS if not hasattr(FSDPModule, name)]
    if missing:
        raise SisuError(
            f"sisu needs torch >= {TORCH_MINIMUM} (FSDP2's FSDPModule.{missing[0]}); this is torch "
            f"{torch.__version__}: install a newer build for your accelerator, e.g. pip install 'torch>={TORCH_MINIMUM}'"
        )


def teardown() -> None:
    """Destroy the process group if one is active; safe to call twice."""
    global _COLLECTIVE_DEVICE
    _COLLECTIVE_DEVICE = None
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) identically on every rank."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# --- collectives ---------------------------------------------------------------------------------------------
#
# Every collective sisu issues goes through the functions below; no other module calls a torch.distributed
# collective (tests/trainer/test_collectives.py checks the source). NCCL and RCCL serve only GPU tensors and
# gloo on CPU only CPU tensors, so a tensor built with a bare `torch.tensor(...)` works on a CPU test machine and
# crashes the first multi-GPU step. Here the callers hand over plain numbers or any tensor, and the helper puts
# them on the device the process group serves, recorded once by `init_distributed`.

_COLLECTIVE_DEVICE: torch.device | None = None
REDUCE_OPS = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}


def collective_device() -> torch.device:
    """The device whose tensors the process group's backend serves (the training device); CPU before init."""
    return _COLLECTIVE_DEVICE if _COLLECTIVE_DEVICE is not None else torch.device("cpu")


def world_size() -> int:
    """Ranks in the process group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _reduce_op(op: str) -> Any:
    if op not in REDUCE_OPS:
        raise ValueError(f"unknown reduce op {op!r}; expected {', '.join(REDUCE_OPS)}")
    return REDUCE_OPS[op]


def reduce_tensor(tensor: torch.Tensor, *, op: str = "sum") -> torch.Tensor:
    """`tensor` reduced over all ranks, as a new tensor on the collective device (the input is not changed)."""
    reduce_op = _reduce_op(op)
    work = tensor.detach().to(collective_device(), copy=True)
    if world_size() > 1:
        dist.all_reduce(work, op=reduce_op)
    return work


def reduce_values(values: Sequence[float | int | torch.Tensor], *, op: str = "sum") -> list[float]:
    """Plain numbers (or 0-dim tensors on any device) reduced over all ranks in one float64 all-reduce.

    The values come back to the host once, as Python floats (integers up to 2**53 are exact).
    """
    return reduce_tensor(stack_values(values), op=op).tolist()


def stack_values(values: Sequence[float | int | torch.Tensor]) -> torch.Tensor:
    """[len(values)] float64 on the collective device, from numbers and 0-dim tensors of any device and dtype."""
    device = collective_device()
    if not any(isinstance(v, torch.Tensor) for v in values):
        return torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    parts = [
        v.detach().reshape(()).to(device, torch.float64)
        if isinstance(v, torch.Tensor)
        else torch.tensor(float(v), dtype=torch.float64, device=device)
        for v in values
    ]
    return torch.stack(parts)


def broadcast_(tensor: torch.Tensor, *, src: int = 0) -> torch.Tensor:
    """Overwrite `tensor` in place with rank `src`'s values (through the collective device); returns it."""
    if world_size() == 1:
        return tensor
    device = collective_device()
    if tensor.device == device:
        dist.broadcast(tensor, src=src)
        return tensor
    work = tensor.detach().to(device, copy=True)
    dist.broadcast(work, src=src)
    with torch.no_grad():
        tensor.copy_(work)
    return tensor


def broadcast_object(obj: Any, *, src: int = 0) -> Any:
    """Rank `src`'s picklable `obj` on every rank (between sisu's own processes; nothing read from disk)."""
    if world_size() == 1:
        return obj
    # torch pickles the object into a tensor on the group's own device (NCCL: the current GPU; gloo: CPU, or CUDA
    # when gloo serves CUDA alone), so these need no device from us
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable `obj`, in rank order."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait for every rank (a no-op without a process group of several ranks)."""
    if world_size() > 1:
        dist.barrier()


@dataclasses.dataclass(frozen=True)
class DataGroup:
    """The process group as the data layer sees it (data/group.py's Group): integers reduced and objects
    gathered through the helpers above, and the timeout the data layer's waits stay under."""

    rank: int
    world_size: int
    timeout_seconds: float | None

    def all_reduce(self, values: Sequence[int], *, op: str = "sum") -> list[int]:
        return [int(v) for v in reduce_values(values, op=op)]  # exact below 2**53

    def all_gather(self, obj: Any) -> list[Any]:
        return all_gather_objects(obj)


def data_group(*, timeout_minutes: float) -> DataGroup:
    """This job's ranks for the data layer (after `init_distributed`)."""
    return DataGroup(rank(), world_size(), timeout_minutes * 60.0)


class _RankFilter(logging.Filter):
    def __init__(self, rank: int) -> None:
        super().__init__()
        self.rank = rank

    def filter(self, record: logging.LogRecord) -> bool:
        record.rank = self.rank
        return True


def setup_logging(*, rank: int, level: str = "info", log_dir: str | os.PathLike | None = None) -> None:
    """Console logging on rank 0 (warnings and errors from every rank); optional per-rank log files."""
    root = logging.getLogger("sisu")
    root.handlers.clear()
    root.setLevel(logging.DEBUG)
    root.propagate = False
    console = logging.StreamHandler(sys.stdout if rank == 0 else sys.stderr)
    console.setLevel(getattr(logging, level.upper()) if rank == 0 else logging.WARNING)
    fmt = "[%(asctime)s rank%(rank)d] %(message)s" if rank else "[%(asctime)s] %(message)s"
    console.setFormatter(logging.Formatter(fmt, datefmt="%H:%M:%S"))
    console.addFilter(_RankFilter(rank))
    root.addHandler(console)
    if log_dir is not None:
        path = Path(log_dir)
        path.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path / f"rank_{rank}.log", encoding="utf-8")
        handler.setLevel(logging.DEBUG)
        handler.setFormatter(logging.Formatter("[%(asctime)s rank%(rank)d %(levelname)s] %(message)s"))
        handler.addFilter(_RankFilter(rank))
        root.addHandler(handler)
