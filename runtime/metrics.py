"""Rank-0 metrics: OUTPUT_DIR/metrics.jsonl (one object per optimizer step), TensorBoard, and console lines."""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger("sisu")


def peak_memory_bytes(device: torch.device) -> int:
    """CUDA allocator peak on GPU; peak resident set size of this process on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:  # VmHWM restarts at exec; ru_maxrss would carry over a larger parent's peak (pytest, torchrun)
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def current_rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_memory_bytes(torch.device("cpu"))


def truncate_metrics(path: str | os.PathLike, *, last_step: int) -> None:
    """Drop lines for steps after `last_step` (written after the checkpoint a resumed run starts from)."""
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by a kill mid-write
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)


class MetricsLogger:
    """Writes on rank 0 only; other ranks get a no-op instance."""

    def __init__(
        self, output_dir: str | os.PathLike, *, enabled: bool, tensorboard: bool, every_steps: int
    ) -> None:
        self.enabled = enabled
        self.every_steps = every_steps
        self.path = Path(output_dir) / "metrics.jsonl"
        self._writer = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(Path(output_dir) / "tb"))

    def log(
        self, record: dict[str, Any], *, total_steps: int, elapsed: float, steps_done_this_run: int
    ) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        step = record["step"]
        if self._writer is not None:
            for key, value in record.items():
                if key not in ("step", "epoch") and isinstance(value, int | float):
                    self._writer.add_scalar(key if "/" in key else f"train/{key}", value, step)
            self._writer.flush()
        if step % self.every_steps == 0 or step == total_steps:
            per_step = elapsed / max(1, steps_done_this_run)
            eta = per_step * (total_steps - step)
            extras = "  ".join(
                f"{k} {v:.4g}" for k, v in record.items() if k.startswith("rewards/") and isinstance(v, float)
            )
            logger.info(
                "step %d/%d  epoch %d  loss %.4f  lr %.3g  grad_norm %.3g  tok/s %.0f  %s eta %s",
                step,
                total_steps,
                record["epoch"],
                record["loss"],
                record["lr"],
                record["grad_norm"],
                record["tokens_per_second"],
                extras + "  " if extras else "",
                _format_seconds(eta),
            )

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start
