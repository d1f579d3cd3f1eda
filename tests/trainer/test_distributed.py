import json
import os
import subprocess
import sys
import textwrap

import pytest

from trainer.distributed import TORCHRUN_VARS, read_launch_env

WORKER = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from trainer.distributed import all_reduce_sum, init_distributed, teardown
    info = init_distributed(backend="auto")
    # each rank contributes a different number of target tokens: rank r has r + 3
    tokens = all_reduce_sum(torch.tensor([info.rank + 3], dtype=torch.int64))
    out = {"rank": info.rank, "world": info.world_size, "backend": info.backend,
           "device": str(info.device), "tokens": int(tokens.item())}
    with open(os.path.join(sys.argv[1], f"rank{info.rank}.json"), "w") as f:
        json.dump(out, f)
    teardown()
    """
)


def _run(cmd, tmp_path, env=None):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    base = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    base["PYTHONPATH"] = os.getcwd() + os.pathsep + base.get("PYTHONPATH", "")
    base.update(env or {})
    return subprocess.run(
        [*cmd, str(script), str(tmp_path)], capture_output=True, text=True, env=base, timeout=180
    )


def test_two_process_gloo_all_reduce(tmp_path):
    proc = _run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r, res in enumerate(results):
        assert res == {"rank": r, "world": 2, "backend": "gloo", "device": "cpu", "tokens": 3 + 4}


def test_plain_single_process(tmp_path):
    proc = _run([sys.executable], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "rank0.json").read_text())["tokens"] == 3


def test_incomplete_torchrun_environment(monkeypatch):
    for name in TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)
    assert read_launch_env() is None
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="incomplete torchrun environment: .*LOCAL_RANK.*missing"):
        read_launch_env()
