import json
import os
import subprocess
import sys
import textwrap

import pytest
from harness import launcher

from runtime.distributed import TORCHRUN_VARS, read_launch_env

WORKER = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from runtime.distributed import (
        all_gather_objects, broadcast_, broadcast_object, init_distributed, reduce_values, teardown
    )
    info = init_distributed(backend="auto")
    # each rank contributes a different number of target tokens: rank r has r + 3
    tokens = reduce_values([info.rank + 3, torch.tensor(info.rank * 2.5)])
    largest = reduce_values([info.rank + 3], op="max")[0]
    buffer = torch.full((3,), float(info.rank))
    broadcast_(buffer, src=0)
    out = {"rank": info.rank, "world": info.world_size, "backend": info.backend,
           "device": str(info.device), "tokens": tokens, "largest": largest, "buffer": buffer.tolist(),
           "from_0": broadcast_object({"keys": [f"k{info.rank}"]}, src=0),
           "gathered": all_gather_objects(info.rank * 10)}
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
    proc = _run(launcher(2), tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r, res in enumerate(results):
        assert res == {
            "rank": r,
            "world": 2,
            "backend": "gloo",
            "device": "cpu",
            "tokens": [3 + 4, 0 + 2.5],
            "largest": 4,
            "buffer": [0.0, 0.0, 0.0],
            "from_0": {"keys": ["k0"]},
            "gathered": [0, 10],
        }


def test_plain_single_process(tmp_path):
    proc = _run([sys.executable], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "rank0.json").read_text())
    assert result["tokens"] == [3, 0] and result["gathered"] == [0] and result["from_0"] == {"keys": ["k0"]}


def test_incomplete_torchrun_environment(monkeypatch):
    for name in TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)
    assert read_launch_env() is None
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="incomplete torchrun environment: .*LOCAL_RANK.*missing"):
        read_launch_env()
