"""launch/profile.sh: profiler selection, the command line it builds, and the message when none is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

BASH = shutil.which("bash")
SFT = ["python", "launch/sft.py", "--config", "recipes/test/tiny_sft.yaml"]

FAKE_PROFILER = """#!{bash}
# Records its arguments, one per line, and exits with FAKE_STATUS; profiles nothing.
printf '%s\\n' "$@" > "$FAKE_ARGV"
exit "${{FAKE_STATUS:-0}}"
"""


def _bin(tmp_path: Path, *tools: str) -> Path:
    """A PATH directory with fake profilers and the one external command the script needs (mkdir)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "mkdir").symlink_to(shutil.which("mkdir"))
    for tool in tools:
        (bin_dir / tool).write_text(FAKE_PROFILER.format(bash=BASH))
        (bin_dir / tool).chmod(0o755)
    return bin_dir


def _profile(repo, bin_dir, args, **env):
    return subprocess.run(
        [BASH, "launch/profile.sh", *args],
        cwd=repo,
        env=dict(os.environ, PATH=str(bin_dir), **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_no_profiler_installed_is_a_clear_error(repo, tmp_path):
    proc = _profile(repo, _bin(tmp_path), ["--", *SFT])
    assert proc.returncode == 127
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no GPU profiler found on PATH")
    assert "rocprofv3, rocprof, nsys" in lines[0] and "profile.enabled=true" in lines[0]


def test_fake_nsys_gets_the_capture_window_command_line(repo, tmp_path):
    argv = tmp_path / "argv"
    out = tmp_path / "prof"
    args = [
        "--out",
        str(out),
        "--active",
        "5",
        "--capture",
        "api",
        "--",
        *SFT,
        "train.max_steps=8",
        "profile.wait=2",
    ]
    proc = _profile(repo, _bin(tmp_path, "nsys"), args, FAKE_ARGV=str(argv), FAKE_STATUS="3")
    assert proc.returncode == 3  # the profiled command's status comes back
    assert argv.read_text().splitlines() == [
        "profile",
        "-t",
        "cuda,nvtx,osrt",
        "--stats=true",
        "--force-overwrite=true",
        "-o",
        f"{out}/sisu-%h-%p",
        "--capture-range=cudaProfilerApi",
        "--capture-range-end=stop",
        *SFT,
        "train.max_steps=8",
        "profile.wait=2",  # the user's value stays, not followed by the default
        "profile.enabled=true",
        "profile.warmup=1",
        "profile.active=5",
    ]
    assert out.is_dir()
    assert "nsys stats --report cuda_gpu_kern_sum" in proc.stderr


def test_rocprofv3_is_preferred_and_eval_runs_whole(repo, tmp_path):
    bin_dir = _bin(tmp_path, "nsys", "rocprofv3")
    eval_cmd = ["python", "launch/eval.py", "--config", "recipes/test/tiny_eval.yaml"]
    proc = _profile(repo, bin_dir, ["--dry-run", "--out", "P", "--", *eval_cmd])
    assert proc.returncode == 0, proc.stderr
    words = proc.stdout.split()
    assert words[: words.index("--")] == [
        "rocprofv3",
        "--kernel-trace",
        "--marker-trace",
        "--stats",
        "--output-format",
        "csv",
        "pftrace",
        "-d",
        "P",
        "-o",
        "%hostname%/%pid%",
    ]
    assert words[words.index("--") + 1 :] == eval_cmd  # no profile.* keys: eval has no such section
    whole = _profile(repo, bin_dir, ["--dry-run", "--tool", "nsys", "--steps", "5", "--", *SFT])
    assert whole.returncode == 0, whole.stderr
    assert "capture-range" not in whole.stdout and "--delay" not in whole.stdout
    assert whole.stdout.split()[-5:] == [
        "profile.enabled=true",
        "profile.wait=1",
        "profile.warmup=1",
        "profile.active=3",
        "train.max_steps=5",
    ]
    wrong = _profile(
        repo, bin_dir, ["--dry-run", "--capture", "api", "--", *SFT]
    )  # rocprofv3 has no API window
    assert wrong.returncode == 2 and "--capture api" in wrong.stderr
    timed = _profile(
        repo, bin_dir, ["--dry-run", "--tool", "nsys", "--delay", "30", "--duration", "20", "--", *SFT]
    )
    assert "--delay=30 --duration=20" in timed.stdout and "capture-range" not in timed.stdout


def test_requested_profiler_missing(repo, tmp_path):
    proc = _profile(repo, _bin(tmp_path, "nsys"), ["--tool", "rocprofv3", "--", *SFT])
    assert proc.returncode == 127
    assert proc.stderr.strip() == "error: --tool rocprofv3: rocprofv3 not found on PATH"
