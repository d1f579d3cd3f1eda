"""runtime/cli.py: how a job process leaves (exit code and flushed output, one process or a torchrun worker)."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
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
