"""The SLURM scripts, run on this machine through a fake `srun` that starts every "node" locally.

The fake srun starts the given command once per fake node with SLURM_NODEID/SLURM_PROCID set and, like Slurm,
delivers SIGUSR1/SIGTERM to every process of the step (the task, torchrun and the workers); the fake scontrol answers `show hostnames` with loopback addresses and
records `requeue`. torchrun then rendezvouses over loopback with gloo, exactly as on a cluster.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPTS = ("launch/slurm/lumi.sbatch", "launch/slurm/nvidia.sbatch")
TINY = "recipes/test/tiny_sft.yaml"

FAKE_SRUN = """#!{python}
import json, os, signal, subprocess, sys

args = sys.argv[1:]
options = []
while args and args[0].startswith("-"):
    options.append(args.pop(0))
dump = os.environ.get("FAKE_SRUN_DUMP")
if dump:  # record what would run, run nothing
    keys = [k for k in os.environ if k.startswith(("SISU_", "NCCL_", "MIOPEN_", "HIP_", "CUDA_", "OMP_", "HF_"))]
    with open(dump, "w") as handle:
        json.dump({{"options": options, "command": args, "env": {{k: os.environ[k] for k in keys}}}}, handle)
    sys.exit(0)
nodes = int(os.environ["SLURM_JOB_NUM_NODES"])
procs = []
for node in range(nodes):
    env = dict(os.environ, SLURM_NODEID=str(node), SLURM_PROCID=str(node), SLURM_LOCALID="0",
               SLURM_STEP_NUM_NODES=str(nodes), SLURM_STEP_NUM_TASKS=str(nodes))
    procs.append(subprocess.Popen(args, env=env))
    with open(os.environ["FAKE_SRUN_PIDS"], "a") as handle:  # for the test's clean-up
        handle.write(f"{{procs[-1].pid}}\\n")

{descendants}

def step_processes():
    # Slurm signals every process of the job step (its cgroup), not only the task: emulate that by walking
    # the process tree below each fake node's task (torchrun puts its workers in sessions of their own).
    return descendants([proc.pid for proc in procs if proc.poll() is None])

def forward(signum, _frame):
    for pid in step_processes():
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

signal.signal(signal.SIGUSR1, forward)
signal.signal(signal.SIGTERM, forward)
codes = [proc.wait() for proc in procs]
failed = [code if code > 0 else 128 - code for code in codes if code != 0]
sys.exit(failed[0] if failed else 0)
"""

FAKE_SCONTROL = """#!/bin/bash
echo "$*" >> "$FAKE_SCONTROL_LOG"
if [[ $1 == show && $2 == hostnames ]]; then
    printf '127.0.0.1\\n127.0.0.2\\n'
fi
"""


def descendants(roots):
    """The given pids and every process below them (from /proc)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    todo, found = list(roots), []
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def cluster(tmp_path, repo):
    """Environment of a 2-node allocation whose srun and scontrol are the fakes above."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = inspect.getsource(descendants)
    (bin_dir / "srun").write_text(FAKE_SRUN.format(python=sys.executable, descendants=helper))
    (bin_dir / "scontrol").write_text(FAKE_SCONTROL)
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SISU_", "RANK", "LOCAL_RANK"))}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env['PATH']}",
        FAKE_SCONTROL_LOG=str(tmp_path / "scontrol.log"),
        FAKE_SRUN_PIDS=str(tmp_path / "srun.pids"),
        SLURM_JOB_ID="4242",
        SLURM_JOB_NUM_NODES="2",
        SLURM_JOB_NODELIST="nid[005001-005002]",
        SLURM_SUBMIT_DIR=str(repo),
        SISU_PYTHON=sys.executable,
        SISU_NPROC_PER_NODE="1",
        SISU_RDZV_PORT=str(_free_port()),
        SISU_NODE_TMP=str(tmp_path),
        TMPDIR=str(tmp_path),
    )
    yield env
    # A failed test must not leave fake nodes (torchrun and its workers) running.
    pids_file = tmp_path / "srun.pids"
    roots = [int(pid) for pid in pids_file.read_text().split()] if pids_file.exists() else []
    marker = f"FAKE_SRUN_PIDS={pids_file}".encode()
    for pid in descendants(roots):
        try:  # only processes of this test's fake nodes (a recorded pid may have been reused since)
            if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


def _sbatch(script, args, env, repo, **kwargs):
    return subprocess.run(
        ["bash", script, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=180, **kwargs
    )


def _steps(out: Path) -> list[int]:
    """Steps logged in metrics.jsonl so far (complete lines only: the trainer may be writing the next one)."""
    path = out / "metrics.jsonl"
    lines = path.read_text().split("\n")[:-1] if path.exists() else []
    return [json.loads(line)["step"] for line in lines]


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse_and_request_one_task_per_node(script, repo):
    assert subprocess.run(["bash", "-n", script], cwd=repo).returncode == 0
    header = [line for line in (repo / script).read_text().splitlines() if line.startswith("#SBATCH")]
    options = {line.split()[1].split("=")[0]: line.split()[1] for line in header}
    assert options["--ntasks-per-node"] == "--ntasks-per-node=1"
    assert options["--gpus-per-node"] == "--gpus-per-node=8"
    assert options["--signal"] == "--signal=B:USR1@300"
    assert "--requeue" in options


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ([], "missing job"),
        (["train", TINY], "unknown job 'train'"),
        (["sft"], "missing config"),
        (["sft", "recipes/nope.yaml"], "config 'recipes/nope.yaml' not found"),
    ],
)
def test_bad_arguments_give_one_line_usage(args, reason, cluster, repo):
    proc = _sbatch("launch/slurm/lumi.sbatch", args, cluster, repo)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("usage: sbatch") and "sft|dpo|eval|translate|make_pairs" in lines[0]
    assert reason in lines[0]
    assert not (Path(cluster["FAKE_SCONTROL_LOG"])).exists()  # stopped before looking at the allocation


def test_lumi_command_line_and_environment(cluster, repo, tmp_path):
    dump = tmp_path / "srun.json"
    env = dict(
        cluster,
        FAKE_SRUN_DUMP=str(dump),
        SLURM_JOB_NUM_NODES="4",
        SLURM_GPUS_PER_NODE="mi250:8",
        SLURM_CPUS_PER_TASK="56",
        HIP_VISIBLE_DEVICES="3",
    )
    del env["SISU_NPROC_PER_NODE"]
    port = env["SISU_RDZV_PORT"]
    proc = _sbatch("launch/slurm/lumi.sbatch", ["sft", TINY, "train.max_steps=10"], env, repo)
    assert proc.returncode == 0, proc.stderr
    assert "sft on 4 node(s) x 8 worker(s)" in proc.stdout
    run = json.loads(dump.read_text())
    assert run["options"][:4] == ["--nodes=4", "--ntasks=4", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert "--cpus-per-task=56" in run["options"] and "--cpu-bind=none" in run["options"]
    command = run["command"]
    assert command[:4] == ["bash", str(repo / "launch/slurm/common.sh"), "node", sys.executable]
    for flag in (
        "--nnodes=4",
        "--nproc_per_node=8",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint=127.0.0.1:{port}",
        "--rdzv_id=4242",
        "--max_restarts=2",
        "--no_python",
    ):
        assert flag in command, flag
    worker = command[command.index("--no_python") + 1 :]
    assert worker[:3] == ["bash", str(repo / "launch/slurm/common.sh"), "worker"]
    assert worker[3:8] == [sys.executable, "-u", "launch/sft.py", "--config", TINY]
    assert command[-2:] == ["resume=auto", "train.max_steps=10"]  # user overrides after the default
    assert run["env"]["NCCL_SOCKET_IFNAME"] == "hsn0,hsn1,hsn2,hsn3"
    assert run["env"]["NCCL_NET_GDR_LEVEL"] == "PHB"
    assert run["env"]["MIOPEN_USER_DB_PATH"].startswith(str(tmp_path))
    assert run["env"]["MIOPEN_CUSTOM_CACHE_DIR"] == run["env"]["MIOPEN_USER_DB_PATH"]
    assert run["env"]["SISU_CPU_LISTS"].split() == [
        "49-55",
        "57-63",
        "17-23",
        "25-31",
        "1-7",
        "9-15",
        "33-39",
        "41-47",
    ]
    assert run["env"]["SISU_STOP_MODE"] == "workers"
    assert "HIP_VISIBLE_DEVICES" not in run["env"]


def test_eval_job_has_no_resume_and_stops_through_torchrun(cluster, repo, tmp_path):
    dump = tmp_path / "srun.json"
    env = dict(cluster, FAKE_SRUN_DUMP=str(dump), SLURM_GPUS_ON_NODE="4")
    del env["SISU_NPROC_PER_NODE"]
    proc = _sbatch("launch/slurm/nvidia.sbatch", ["eval", "recipes/test/tiny_eval.yaml"], env, repo)
    assert proc.returncode == 0, proc.stderr
    run = json.loads(dump.read_text())
    assert "--nproc_per_node=4" in run["command"]
    assert run["command"][-3:] == ["launch/eval.py", "--config", "recipes/test/tiny_eval.yaml"]
    assert run["env"]["SISU_STOP_MODE"] == "launcher"


def test_two_node_sft_through_fake_srun(cluster, repo, tmp_path):
    out = tmp_path / "run"
    proc = _sbatch(
        "launch/slurm/lumi.sbatch", ["sft", TINY, "train.max_steps=2", f"output_dir={out}"], cluster, repo
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert _steps(out) == [1, 2]
    assert "world size 2 (2 node(s))" in log
    assert (out / "final").is_dir()
    assert [p.is_dir() for p in tmp_path.glob("*-miopen-4242")] == [True]  # MIOpen cache on node-local tmp
    assert not list(tmp_path.glob("sisu-node*"))  # node wrappers clean up their pid directories


def test_time_limit_signal_checkpoints_and_requeues(cluster, repo, tmp_path):
    out = tmp_path / "run"
    args = ["sft", TINY, "train.max_steps=500", "checkpoint.every_steps=null", f"output_dir={out}"]
    log_path = tmp_path / "job.out"
    with open(log_path, "w") as log_file:  # a file, not a pipe: a stray process cannot block reading it
        proc = subprocess.Popen(
            ["bash", "launch/slurm/nvidia.sbatch", *args],
            cwd=repo,
            env=cluster,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 150
            while not _steps(out) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _steps(out), "training did not start: " + log_path.read_text()
            proc.send_signal(signal.SIGUSR1)  # what Slurm sends 300 s before the time limit
            proc.wait(timeout=150)
        finally:
            if proc.poll() is None:
                proc.kill()
    log = log_path.read_text()
    assert proc.returncode == 0, log
    steps = _steps(out)
    assert 1 <= len(steps) < 500
    assert "stopping at step" in log
    assert (out / "checkpoints" / f"step_{steps[-1]}").is_dir()  # checkpoint of the last finished step
    assert not (out / "final").exists()
    assert "requeue 4242" in Path(cluster["FAKE_SCONTROL_LOG"]).read_text()


def test_failing_step_gives_its_exit_status(cluster, repo, tmp_path):
    # A launcher that fails on node 1 only: its status has to come back through the node wrapper, srun and
    # the batch script's signal-aware wait.
    fake = tmp_path / "torchrun"
    fake.write_text("#!/bin/bash\n[[ $SLURM_NODEID == 1 ]] && exit 3\nexit 0\n")
    fake.chmod(0o755)
    proc = _sbatch("launch/slurm/nvidia.sbatch", ["sft", TINY], dict(cluster, SISU_TORCHRUN=str(fake)), repo)
    assert proc.returncode == 3, proc.stderr
    assert "sisu: job step failed with exit status 3" in proc.stderr
    assert "requeue" not in Path(cluster["FAKE_SCONTROL_LOG"]).read_text()


def test_worker_binds_to_its_cpu_list_and_records_its_pid(repo, tmp_path):
    cpu = min(os.sched_getaffinity(0))
    probe = "grep Cpus_allowed_list /proc/self/status; echo pid $$"
    env = dict(os.environ, LOCAL_RANK="1", SISU_CPU_LISTS=f"999 {cpu}", SISU_PID_DIR=str(tmp_path))
    proc = subprocess.run(
        ["bash", "launch/slurm/common.sh", "worker", "bash", "-c", probe],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0].split()[-1] == str(cpu)
    pid = proc.stdout.split("pid ")[1].strip()
    assert (tmp_path / "1.pid").read_text().strip() == pid  # exec kept the pid: signals reach the python
    unbound = subprocess.run(
        ["bash", "launch/slurm/common.sh", "worker", "true"],
        cwd=repo,
        env=dict(env, LOCAL_RANK="0"),
        capture_output=True,
        text=True,
    )
    assert unbound.returncode == 0 and "cannot bind to CPUs 999" in unbound.stderr
