"""Preemption (SIGTERM to the whole process group), non-finite steps, and the CPU profiler trace."""

import json
import os
import signal
import subprocess
import time

import pytest
from harness import REPO, job_env, launcher, read_metrics

TINY = "recipes/test/tiny_sft.yaml"


def _cmd(out, *overrides, nproc=1):
    """A command line, for the tests that start the job themselves (Popen, signals)."""
    return [*launcher(nproc), "launch/sft.py", "--config", TINY, f"output_dir={out}",
            f"data.cache_dir={out.parent / 'cache'}", *overrides]  # fmt: skip


def test_sigterm_to_process_group_checkpoints_and_resumes_exactly(tmp_path):
    steps = ["train.max_steps=16", "checkpoint.every_steps=100"]
    straight = tmp_path / "straight"
    done = subprocess.run(
        _cmd(straight, *steps, nproc=2), cwd=REPO, capture_output=True, text=True, env=job_env(), timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]

    out = tmp_path / "preempted"
    proc = subprocess.Popen(
        _cmd(out, *steps, nproc=2),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=job_env(),
        start_new_session=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline:  # wait until training is under way, then preempt like SLURM does
        path = out / "metrics.jsonl"
        if path.is_file() and len(path.read_text().splitlines()) >= 2:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGTERM)
    log = proc.communicate(timeout=300)[0]
    assert "stopping at step" in log and "checkpoint written" in log, log[-3000:]
    stopped = len(read_metrics(out))
    assert 2 <= stopped < 16, "the run should stop early, after the step in progress"
    assert (out / "checkpoints" / f"step_{stopped}" / "trainer_state.json").is_file()
    assert not (out / "final").exists()

    resumed = subprocess.run(
        _cmd(out, *steps, nproc=2), cwd=REPO, capture_output=True, text=True, env=job_env(), timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [m["loss"] for m in read_metrics(out)] == pytest.approx(
        [m["loss"] for m in read_metrics(straight)], rel=1e-6
    )


def test_non_finite_step_is_skipped_and_counted(tmp_path):
    out = tmp_path / "nan"
    proc = subprocess.run(
        _cmd(out, "train.max_steps=4"),
        cwd=REPO,
        capture_output=True,
        text=True,
        env=job_env({"SISU_DEBUG_NAN_AT_STEPS": "2"}),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = read_metrics(out)
    assert [m["bad_steps"] for m in metrics] == [0, 1, 1, 1]
    assert metrics[1]["loss"] != metrics[1]["loss"]  # NaN logged as such
    assert all(m["loss"] == m["loss"] for m in metrics[2:])  # training went on with finite losses
    assert "non-finite loss or gradient norm; update skipped" in proc.stdout + proc.stderr


def test_too_many_bad_steps_stop_with_one_line_and_keep_last_checkpoint(tmp_path):
    out = tmp_path / "diverged"
    proc = subprocess.run(
        _cmd(out, "train.max_steps=8", "checkpoint.every_steps=2", "train.max_bad_steps=2"),
        cwd=REPO,
        capture_output=True,
        text=True,
        env=job_env({"SISU_DEBUG_NAN_AT_STEPS": "3,4"}),
        timeout=600,
    )
    assert proc.returncode == 3
    last = proc.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("error: 2 consecutive steps with a non-finite loss")
        and "Traceback" not in proc.stderr
    )
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_2"]


def test_cpu_profile_trace_has_named_ranges(tmp_path):
    out = tmp_path / "prof"
    proc = subprocess.run(
        _cmd(
            out,
            "train.max_steps=4",
            "profile.enabled=true",
            "profile.wait=0",
            "profile.warmup=1",
            "profile.active=2",
        ),
        cwd=REPO,
        capture_output=True,
        text=True,
        env=job_env(),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    traces = list((out / "profile").glob("trace_rank0_step*.json"))
    assert len(traces) == 1
    names = {event.get("name") for event in json.loads(traces[0].read_text())["traceEvents"]}
    for name in ("data", "forward", "backward", "optimizer"):
        assert name in names, name
    assert any((out / "profile" / "tb").iterdir())


def test_mfu_uses_model_flops_and_the_peak_override(tmp_path):
    from planner.throughput import model_flops_per_token
    from runtime.config import load_config
    from runtime.model import architecture_config
    from trainer.jobs import SFTConfig

    out = tmp_path / "mfu"
    proc = subprocess.run(
        _cmd(out, "train.max_steps=2", "train.peak_tflops=0.5"),
        cwd=REPO,
        capture_output=True,
        text=True,
        env=job_env(),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = load_config(SFTConfig, os.path.join(REPO, TINY), [f"output_dir={out}"])
    config = architecture_config(cfg.model, vocab_size=258)
    low, high = model_flops_per_token(config, 1), model_flops_per_token(config, cfg.train.max_seq_len)
    for m in read_metrics(out):
        per_token = m["mfu"] * 0.5e12 / m["tokens_per_second"]  # = model FLOPs per real token of the step
        # mfu and tokens_per_second are rounded separately; a row of exactly max_seq_len lands on `high`.
        assert low * (1 - 1e-9) <= per_token <= high * (1 + 1e-9)
    no_peak = tmp_path / "cpu"
    subprocess.run(
        _cmd(no_peak, "train.max_steps=1"),
        cwd=REPO,
        capture_output=True,
        text=True,
        env=job_env(),
        timeout=600,
        check=True,
    )
    assert "mfu" not in read_metrics(no_peak)[0]  # CPU: no peak in the device table, no MFU
