"""Named ranges visible to torch.profiler, nsys and rocprof, and the scheduled torch.profiler of a run.

`named_range("forward")` opens a `torch.profiler.record_function` range and, on GPU, an NVTX range
(`torch.cuda.nvtx`, which ROCm maps to roctx), so `nsys`, `rocprofv3 --marker-trace` and `rocprof --roctx-trace`
show the same names on their timelines. On CPU without an active profiler it costs next to nothing.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger("sisu")


@contextlib.contextmanager
def named_range(name: str) -> Iterator[None]:
    nvtx = torch.cuda.is_available()
    if nvtx:
        torch.cuda.nvtx.range_push(name)
    try:
        with torch.profiler.record_function(name):
            yield
    finally:
        if nvtx:
            torch.cuda.nvtx.range_pop()


class StepProfiler:
    """torch.profiler over a window of optimizer steps (wait, warmup, active), on the configured ranks.

    Traces go to OUTPUT_DIR/profile/: the TensorBoard profiler plugin's files (`tb/`, Chrome trace JSON) and a
    copy per rank under a stable name (`trace_rank{R}_step{N}.json`, opens in ui.perfetto.dev or chrome://tracing);
    with `memory` also memory events and, on GPU, a CUDA memory snapshot (`memory_snapshot_rank{R}.pickle`).
    """

    def __init__(self, cfg: Any, *, output_dir: str | Path, rank: int, device: torch.device) -> None:
        self.enabled = bool(cfg.enabled) and rank in cfg.ranks
        self.rank = rank
        self.device = device
        self.dir = Path(output_dir) / "profile"
        self.memory = cfg.memory
        self._profiler: torch.profiler.profile | None = None
        self._steps = 0
        self._first_active = cfg.wait + cfg.warmup
        self._active = cfg.active
        if not self.enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        tb_handler = torch.profiler.tensorboard_trace_handler(str(self.dir / "tb"), worker_name=f"rank{rank}")

        def on_ready(prof: torch.profiler.profile) -> None:
            # The TensorBoard handler writes a Chrome/Perfetto JSON trace (a trace can be exported only once);
            # a copy under a stable name is handier for ui.perfetto.dev and scripts.
            before = set((self.dir / "tb").glob("*.pt.trace.json"))
            tb_handler(prof)
            new = sorted(set((self.dir / "tb").glob("*.pt.trace.json")) - before)
            if new:
                path = self.dir / f"trace_rank{rank}_step{prof.step_num}.json"
                shutil.copyfile(new[-1], path)
                logger.info("profile: wrote %s", path)

        if self.memory and device.type == "cuda":
            torch.cuda.memory._record_memory_history(max_entries=100_000)
        self._profiler = torch.profiler.profile(
            activities=activities,
            schedule=torch.profiler.schedule(wait=cfg.wait, warmup=cfg.warmup, active=cfg.active, repeat=1),
            on_trace_ready=on_ready,
            record_shapes=True,
            profile_memory=self.memory,
            with_stack=False,
        )
        self._profiler.start()
        logger.info(
            "profile: recording steps %d-%d on rank %d",
            cfg.wait + cfg.warmup + 1,
            cfg.wait + cfg.warmup + cfg.active,
            rank,
        )

    def step(self) -> None:
        """Call after every optimizer step. Also opens and closes the CUDA profiler API range around the active
        steps, so `nsys --capture-range=cudaProfilerApi` records exactly the same window."""
        if self._profiler is None:
            return
        self._profiler.step()
        self._steps += 1
        if self.device.type == "cuda":
            if self._steps == self._first_active:
                torch.cuda.profiler.start()
            elif self._steps == self._first_active + self._active:
                torch.cuda.profiler.stop()

    def stop(self) -> None:
        if self._profiler is None:
            return
        self._profiler.stop()
        self._profiler = None
        if self.memory and self.device.type == "cuda":
            torch.cuda.memory._dump_snapshot(str(self.dir / f"memory_snapshot_rank{self.rank}.pickle"))
            torch.cuda.memory._record_memory_history(enabled=None)
