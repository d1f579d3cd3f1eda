"""runtime/cli.py: how a job process leaves (exit code and flushed output, one process or a torchrun worker)."""

import ast
import os
import subprocess
import sys

import pytest
from harness import REPO, run_job

TORCHRUN_JOBS = ["sft", "dpo", "eval", "translate", "make_pairs"]

_LEAVE = """
import atexit, logging, sys
sys.path.insert(0, {repo!r})
from runtime.cli import exit_process
atexit.register(lambda: print("finalised", flush=True))
logging.basicConfig(stream=sys.stderr, level=logging.INFO)
logging.getLogger("sisu").info("logged line")
print("printed line")            # stdout is a pipe: block-buffered, lost unless flushed
sys.stderr.write("stderr tail")  # no newline: stays in the buffer
exit_process({code})
"""


@pytest.mark.parametrize(("world_size", "code"), [("1", 0), ("2", 0), ("2", 3)])
def test_exit_process_keeps_the_code_and_the_output(world_size, code):
    """A torchrun worker (WORLD_SIZE > 1) skips interpreter finalisation (the atexit handler does not run) and
    still exits with its code and every buffered line; a single process finalises as usual."""
    # Unbuffered streams would hide a missing flush.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "PYTHONUNBUFFERED")
    }
    env["WORLD_SIZE"] = world_size
    proc = subprocess.run(
        [sys.executable, "-c", _LEAVE.format(repo=str(REPO), code=code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == code
    assert proc.stdout == ("printed line\nfinalised\n" if world_size == "1" else "printed line\n")
    assert "logged line" in proc.stderr
    assert proc.stderr.endswith("stderr tail")


@pytest.mark.parametrize("job", TORCHRUN_JOBS)
def test_every_torchrun_job_leaves_through_exit_process(job):
    tree = ast.parse((REPO / "launch" / f"{job}.py").read_text())
    main_guard = [node for node in tree.body if isinstance(node, ast.If)]
    assert main_guard, f"launch/{job}.py has no __main__ guard"
    calls = [ast.unparse(stmt) for stmt in main_guard[-1].body]
    assert calls == ["exit_process(main())"], calls


def _tiny_sft(
    tmp_path, *overrides: str, nproc: int, env_extra: dict[str, str]
) -> subprocess.CompletedProcess:
    return run_job("launch/sft.py", "recipes/test/tiny_sft.yaml", f"output_dir={tmp_path / 'out'}",
                   f"data.cache_dir={tmp_path / 'cache'}", "train.max_steps=2", *overrides, nproc=nproc, env=env_extra,
                   check=False)  # fmt: skip


@pytest.mark.parametrize("nproc", [1, 2])
def test_a_bug_keeps_its_traceback_and_names_its_rank(tmp_path, nproc):
    """A ValueError from inside the model's forward is a bug, not a refusal: the whole traceback (down to the
    model's forward), exit status 1; on two ranks every line of it starts with the rank that raised it."""
    ranks = ",".join(str(r) for r in range(nproc))
    proc = _tiny_sft(tmp_path, nproc=nproc, env_extra={"SISU_DEBUG_BUG_IN_FORWARD": ranks})
    assert proc.returncode == 1, proc.stderr[-3000:]
    prefixes = [f"[rank{r}] " for r in range(nproc)] if nproc > 1 else [""]
    for prefix in prefixes:
        assert f"{prefix}Traceback (most recent call last):" in proc.stderr, proc.stderr[-3000:]
        assert f"{prefix}ValueError: planted bug in the forward of rank" in proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.startswith(prefix + "  File ")]
        assert any("runtime/faults.py" in line for line in lines) and any(
            "trainer/trainer.py" in line for line in lines
        )
    assert "error: planted bug" not in proc.stderr  # never printed as a refusal


def test_a_refusal_is_one_line_and_exit_2_on_every_rank(tmp_path):
    proc = _tiny_sft(tmp_path, nproc=2, env_extra={})
    assert proc.returncode == 0, proc.stderr[-2000:]
    bad = _tiny_sft(tmp_path / "bad", "train.micro_batch_size=3", nproc=2, env_extra={})
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error: ")]
    # torchrun's own agent reports the failed workers with a traceback of its own; the workers print none
    assert bad.returncode != 0 and "[rank0] Traceback" not in bad.stderr and "ConfigError" not in bad.stderr
    # each rank refuses before any process group; torchrun may stop the second before it has printed its line
    assert errors and all("is not divisible by train.micro_batch_size (3)" in e for e in errors), bad.stderr


def test_a_full_disk_outside_checkpoints_is_one_line_not_a_traceback(tmp_path):
    """A real failed write: RLIMIT_FSIZE 2,000 bytes lets the config (1.8 kB) be written but not the sixth row of
    metrics.jsonl (~350 bytes a row); the job says so in one line and exits 2."""
    import resource
    import signal

    from harness import job_env, launcher

    warm = _tiny_sft(tmp_path / "warm", nproc=1, env_extra={})  # the tokenized cache, without a limit
    assert warm.returncode == 0, warm.stderr[-2000:]

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (2_000, 2_000))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the failed write returns EFBIG instead of killing

    out = tmp_path / "full"
    command = [*launcher(1), "launch/sft.py", "--config", "recipes/test/tiny_sft.yaml", f"output_dir={out}",
               f"data.cache_dir={tmp_path / 'warm' / 'cache'}", "checkpoint.every_steps=null",
               "logging.tensorboard=false"]  # fmt: skip
    proc = subprocess.run(command, cwd=REPO, env=job_env(), capture_output=True, text=True, timeout=600,
                          preexec_fn=limit_file_size)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        "error: the disk is full (File too large); free space and run again (resume=auto continues)"
    ]
    assert not (out / ".sisu.lock").exists()  # released on the way out
