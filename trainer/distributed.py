"""Process-group runtime: torchrun (1..N nodes) or a plain single process, on GPU (CUDA/ROCm) or CPU."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

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
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def read_launch_env() -> tuple[int, int, int, int] | None:
    """(rank, world_size, local_rank, local_world_size) from torchrun's variables; None when not launched.

    Raises ValueError when the environment is only partly set (a hand-made launcher missing a variable).
    """
    present = [name for name in TORCHRUN_VARS if name in os.environ]
    if not present:
        return None
    missing = [name for name in TORCHRUN_VARS if name not in os.environ]
    if missing:
        raise ValueError(
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
        raise ValueError(
            f"inconsistent torchrun environment: RANK={rank} WORLD_SIZE={world} LOCAL_RANK={local_rank}"
        )
    return rank, world, local_rank, local_world


def select_device(local_rank: int, *, prefer_cpu: bool = False) -> torch.device:
    """CUDA device `local_rank` when a GPU is present (ROCm builds also report as cuda), else CPU."""
    if not prefer_cpu and torch.cuda.is_available():
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise ValueError(f"LOCAL_RANK={local_rank} but only {count} GPU(s) are visible on this node")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(
    *, backend: str = "auto", timeout_minutes: float = 30.0, prefer_cpu: bool = False
) -> DistInfo:
    """Start the process group (also for a single plain process, so FSDP2 always has a mesh)."""
    launch = read_launch_env()
    rank, world, local_rank, local_world = launch if launch is not None else (0, 1, 0, 1)
    device = select_device(local_rank, prefer_cpu=prefer_cpu)
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"unknown distributed backend {backend!r}; expected auto, nccl or gloo")
    if backend == "nccl" and device.type != "cuda":
        raise ValueError("distributed.backend=nccl needs a GPU; none is visible (use gloo or auto)")
    timeout = datetime.timedelta(minutes=timeout_minutes)
    if not dist.is_initialized():
        if launch is None:
            # A plain `python launch/x.py` run: a one-rank group on an in-memory store, no ports needed.
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
        else:
            kwargs = {"device_id": device} if device.type == "cuda" else {}
            dist.init_process_group(backend, timeout=timeout, **kwargs)
    info = DistInfo(rank, world, local_rank, local_world, device, backend)
    if info.is_main:
        hip = getattr(torch.version, "hip", None)
        platform = (
            f"ROCm/HIP {hip}" if hip else (f"CUDA {torch.version.cuda}" if device.type == "cuda" else "CPU")
        )
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
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


def teardown() -> None:
    """Destroy the process group if one is active; safe to call twice."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) identically on every rank."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """In-place SUM over all ranks (no-op without a process group); returns the tensor."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    """In-place MAX over all ranks (no-op without a process group); returns the tensor."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


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
