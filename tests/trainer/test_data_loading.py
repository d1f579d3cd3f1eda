"""The trainer's data setup on a real process group (torchrun, gloo): all ranks tokenize together, nobody waits
in a collective for another's work, worker processes give the same data."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from harness import REPO, read_metrics, run_job

from data.templates import CHATML_TEMPLATE

TINY = "recipes/test/tiny_sft.yaml"
# about 0.15 s per rendering on this machine (sisu renders each record twice): far slower than any real template
SLOW_LOOP = "{% for i in range(30) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


def _sft(out: Path, *overrides: str, nproc: int = 1) -> subprocess.CompletedProcess:
    return run_job("launch/sft.py", TINY, f"output_dir={out}", *overrides, nproc=nproc, check=False)


def _losses(out: Path) -> list[float]:
    return [row["loss"] for row in read_metrics(out)]


def test_a_slow_cold_start_never_waits_in_a_collective_past_the_timeout(tmp_path):
    """32 records on a tokenizer whose template takes ~0.15 s a rendering: one shard, tokenized by rank 0 for
    longer than the process group's 3-second timeout while rank 1 has nothing to do. sisu before the shared
    tokenization died here (rank 1 in a barrier); now the ranks meet every 0.3 s and the job finishes."""
    tokenizer = tmp_path / "slow_tokenizer"
    shutil.copytree(REPO / "recipes/test/tokenizer", tokenizer)
    (tokenizer / "chat_template.jinja").write_text(SLOW_LOOP + CHATML_TEMPLATE)
    out = tmp_path / "run"
    proc = _sft(
        out,
        f"model.tokenizer={tokenizer}",
        "data.template=tokenizer",
        "data.sources.0.max_records=16",
        "data.sources.1.max_records=16",
        f"data.cache_dir={tmp_path / 'cache'}",
        "distributed.timeout_minutes=0.05",
        "train.max_steps=2",
        "checkpoint.save_final=false",
        nproc=2,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    took = re.search(r"tokenizing: 32 records in (\d+)s", proc.stdout)
    assert took and int(took.group(1)) > 3, proc.stdout[-3000:]  # the wait really was longer than the timeout
    assert len(_losses(out)) == 2


def test_two_ranks_share_the_cold_start_and_train_on_what_one_rank_builds(tmp_path):
    """132 records are 3 shards: rank 0 tokenizes two, rank 1 one (its own log says so), and the losses equal
    those of a run whose single rank built the same data in two worker processes."""
    two = tmp_path / "two"
    proc = _sft(two, f"data.cache_dir={tmp_path / 'cache2'}", "logging.per_rank_files=true", "train.max_steps=3",
                nproc=2)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rank1 = (two / "logs" / "rank_1.log").read_text()
    assert "tokenizing: rank 1 did 64 of the 132 records (1 items)" in rank1
    rank0 = (two / "logs" / "rank_0.log").read_text()
    assert "tokenizing: rank 0 did 68 of the 132 records (2 items)" in rank0
    one = tmp_path / "one"
    proc = _sft(one, f"data.cache_dir={tmp_path / 'cache1'}", "data.num_workers=2", "train.max_steps=3",
                "train.micro_batch_size=4")  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "132 records in 3 shards, 1 rank(s) x 2 worker(s)" in proc.stdout
    stores = [sorted(p.name for p in (tmp_path / c).iterdir()) for c in ("cache1", "cache2")]
    assert stores[0] == stores[1] and len(stores[0]) == 1  # the same key: the same data
    for name in ("examples.npy", "shards/shard-00000/tokens.npy", "shards/shard-00002/labels.npy"):
        assert (tmp_path / "cache1" / stores[0][0] / name).read_bytes() == (
            tmp_path / "cache2" / stores[0][0] / name
        ).read_bytes()
    assert _losses(one) == pytest.approx(_losses(two), rel=1e-5)  # 1 rank x 2 micro-batches == 2 ranks


def test_every_file_a_run_writes_follows_the_umask(tmp_path):
    """A project's shared directory: what one member's run writes (config, metrics, checkpoint with its RNG state,
    the export, the tokenized data) the others can read. tempfile and safetensors create private files (0600,
    folders 0700); sisu gives them the mode the umask allows (022 here: 0644 and 0755)."""
    import os
    import stat

    out, cache = tmp_path / "run", tmp_path / "cache"
    proc = _sft(out, f"data.cache_dir={cache}", "train.max_steps=2", "checkpoint.every_steps=1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    umask = os.umask(0o022)
    os.umask(umask)
    private = []
    for root in (out, cache):
        for path in [root, *root.rglob("*")]:
            mode = stat.S_IMODE(path.stat().st_mode)
            wanted = (0o777 if path.is_dir() else 0o666) & ~umask
            if mode != wanted:
                private.append(f"{path.relative_to(tmp_path)} {oct(mode)}")
    assert (out / "final" / "model.safetensors").is_file() and list(
        out.glob("checkpoints/step_*/rng_rank0.safetensors")
    )
    assert private == []


@pytest.mark.parametrize("kind", ["empty file", "a directory"])
def test_bad_data_is_one_line_on_every_rank(tmp_path, kind):
    """An empty data file, or a directory given as one, under torchrun: every rank stops with the same one line
    (before, rank 0 printed it and rank 1 died in a barrier with a gloo traceback)."""
    bad = tmp_path / "chats.jsonl"
    if kind == "empty file":
        bad.write_text("\n")
    else:
        bad.mkdir()
    proc = _sft(tmp_path / "run", f"data.sources=[{{path: {bad}, format: messages}}]",
                f"data.cache_dir={tmp_path / 'cache'}", nproc=2)  # fmt: skip
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode != 0 and errors, proc.stderr[-3000:]
    assert "[rank" not in proc.stderr and "gloo" not in proc.stderr.lower(), proc.stderr[-3000:]
    assert len(set(errors)) == 1 and str(bad) in errors[0]
