"""runtime/lock.py: one job per output directory."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys

import pytest
from harness import run_job

from data.errors import SisuError
from runtime.lock import LOCK, acquire, release


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # gone (and not reused this quickly)


def test_a_held_lock_refuses_a_second_holder_and_is_released(tmp_path):
    path = acquire(tmp_path / "out")
    holder = json.loads(path.read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    with pytest.raises(
        SisuError, match=rf"^{tmp_path / 'out'} is in use by another job \(pid {os.getpid()} on "
    ):
        acquire(tmp_path / "out")
    release(path)
    assert not path.exists()
    release(acquire(tmp_path / "out"))


def test_a_stale_lock_is_taken_over_with_a_warning_one_from_another_host_is_not(tmp_path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK).write_text(
        json.dumps({"host": socket.gethostname(), "pid": _dead_pid(), "started": "yesterday"})
    )
    with caplog.at_level(logging.WARNING, logger="sisu"):
        path = acquire(out)
    assert "removing the stale lock of a job that is gone" in caplog.text
    release(path)
    (out / LOCK).write_text(
        json.dumps({"host": "another-node", "pid": 1, "started": "now", "slurm_job": "42"})
    )
    with pytest.raises(
        SisuError, match="pid 1 on another-node, SLURM job 42, started now.*delete .* if no job runs there"
    ):
        acquire(out)


def _job_args(script: str, tmp_path) -> list[str]:
    if script.endswith("sft.py"):
        return [f"data.cache_dir={tmp_path / 'cache'}", "train.max_steps=1"]
    return ["seed=3", "benchmarks.1.limit=1"]


@pytest.mark.parametrize(
    ("script", "recipe"),
    [("launch/sft.py", "recipes/test/tiny_sft.yaml"), ("launch/eval.py", "recipes/test/tiny_judge.yaml")],
)
def test_a_job_in_a_busy_folder_is_refused_in_one_line_and_touches_nothing(tmp_path, script, recipe):
    out = tmp_path / "out"
    out.mkdir()
    lock = {"host": socket.gethostname(), "pid": os.getpid(), "started": "now"}  # this test: alive
    (out / LOCK).write_text(json.dumps(lock))
    proc = run_job(script, recipe, f"output_dir={out}", *_job_args(script, tmp_path), check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {out} is in use by another job (pid {os.getpid()}"), last
    assert sorted(p.name for p in out.iterdir()) == [LOCK]  # no config, no metrics, nothing
    (out / LOCK).write_text(json.dumps({**lock, "pid": _dead_pid()}))
    again = run_job(script, recipe, f"output_dir={out}", *_job_args(script, tmp_path))
    assert "removing the stale lock" in again.stdout + again.stderr and not (out / LOCK).exists()


def test_a_lock_of_an_earlier_attempt_of_this_job_is_taken_over_from_any_host(tmp_path, monkeypatch, caplog):
    """A restarted torchrun group or a requeued SLURM job may get rank 0 on another node: its own earlier lock is
    stale; the lock of a same-attempt holder, or of another job, on another host is not."""
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-17")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    earlier = {"host": "node-a", "pid": 1, "started": "then", "elastic_run": "job-17", "attempt": 0}
    (out / LOCK).write_text(json.dumps(earlier))
    with caplog.at_level(logging.WARNING, logger="sisu"):
        path = acquire(out)
    assert "pid 1 on node-a, started then, an earlier attempt of this job" in caplog.text
    release(path)
    for other in ({**earlier, "attempt": 1}, {**earlier, "elastic_run": "job-18"}):
        (out / LOCK).write_text(json.dumps(other))
        with pytest.raises(SisuError, match="is in use by another job"):
            acquire(out)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    (out / LOCK).write_text(json.dumps({"host": "node-b", "pid": 9, "slurm_job": "4242", "attempt": 1}))
    release(acquire(out))


def test_a_second_job_while_the_first_runs_is_refused_and_the_first_finishes(tmp_path):
    """Two real jobs: the second starts while the first trains in the same output_dir."""
    import time

    from harness import REPO, job_env, launcher

    out, cache = tmp_path / "out", tmp_path / "cache"
    run_job("launch/sft.py", "recipes/test/tiny_sft.yaml", f"output_dir={tmp_path / 'warm'}",
            f"data.cache_dir={cache}", "train.max_steps=1")  # fmt: skip
    first = subprocess.Popen(
        [*launcher(1), "launch/sft.py", "--config", "recipes/test/tiny_sft.yaml", f"output_dir={out}",
         f"data.cache_dir={cache}", "train.max_steps=60", "train.epochs=10", "checkpoint.every_steps=null"],
        cwd=REPO, env=job_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (out / "metrics.jsonl").exists() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.2)
        assert (out / LOCK).exists() and first.poll() is None
        started = json.loads((out / LOCK).read_text())["started"]
        second = run_job("launch/sft.py", "recipes/test/tiny_sft.yaml", f"output_dir={out}",
                         f"data.cache_dir={cache}", "train.max_steps=60", "train.epochs=10", check=False)  # fmt: skip
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"error: {out} is in use by another job (pid {first.pid} on {socket.gethostname()}, started "
            f"{started}): wait for it, use another output_dir, or delete "
            f"{out / LOCK} if no job runs there"
        ]
        log, _ = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 0, log[-2000:]
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 61))  # one job's rows, none interleaved
    assert not (out / LOCK).exists()
