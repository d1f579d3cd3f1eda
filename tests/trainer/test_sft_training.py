"""End-to-end SFT runs of the tiny recipe in subprocesses: parity across ranks/nodes, exact resume, export."""

import os
import re
import socket
import subprocess
import sys

import pytest
import torch
from harness import REPO, job_env, launcher, read_metrics, run_job
from safetensors.torch import load_file

TINY = "recipes/test/tiny_sft.yaml"
STEPS = 6


def _sft(out, *overrides, nproc=1, env=None, check=True):
    return run_job("launch/sft.py", TINY, f"output_dir={out}", f"train.max_steps={STEPS}",
                   f"data.cache_dir={out.parent / 'cache'}", *overrides, nproc=nproc, env=env, check=check)  # fmt: skip


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    repo = REPO
    root = tmp_path_factory.mktemp("sft")
    one = root / "one"
    two = root / "two"
    # 1 process: global 8 / micro 2 = 4 accumulation steps; 2 processes: 2 accumulation steps each
    _sft(one)
    _sft(two, nproc=2)
    packed, packed_two = root / "packed", root / "packed_two"
    _sft(packed, "data.packing=true")
    _sft(packed_two, "data.packing=true", nproc=2)
    return {"repo": repo, "root": root, "one": one, "two": two, "packed": packed, "packed_two": packed_two}


def test_one_process_with_accumulation_equals_two_processes(runs):
    one, two = read_metrics(runs["one"]), read_metrics(runs["two"])
    assert [m["step"] for m in one] == list(range(1, STEPS + 1))
    assert [m["num_tokens"] for m in one] == [m["num_tokens"] for m in two]
    for a, b in zip(one, two):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
    assert one[-1]["loss"] < one[0]["loss"]  # it learns
    w1 = load_file(runs["one"] / "final" / "model.safetensors")
    w2 = load_file(runs["two"] / "final" / "model.safetensors")
    assert w1.keys() == w2.keys()
    for key in w1:
        torch.testing.assert_close(w1[key], w2[key], rtol=1e-4, atol=1e-6)


def test_packing_keeps_the_losses_and_cuts_the_padding(runs):
    """Packing works on each optimizer step's own examples: the same examples, target tokens and losses as the
    unpacked run, step for step, in fewer padded slots; 2 processes (whose packed steps can need different
    numbers of micro-batches, evened out with filler batches) equal 1."""
    one, packed, packed_two = (
        read_metrics(runs["one"]),
        read_metrics(runs["packed"]),
        read_metrics(runs["packed_two"]),
    )
    assert [m["num_tokens"] for m in packed] == [m["num_tokens"] for m in one]
    for a, b, c in zip(one, packed, packed_two):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
        assert c["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert b["padding_efficiency"] >= a["padding_efficiency"]
    assert sum(m["padding_efficiency"] for m in packed) > sum(m["padding_efficiency"] for m in one)


def test_explicit_fsdp_prefetching_keeps_the_losses(runs, tmp_path):
    out = tmp_path / "prefetch"
    _sft(out, "train.prefetch_blocks=1", nproc=2)
    for a, b in zip(read_metrics(runs["two"]), read_metrics(out), strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6)


def test_two_nodes_on_loopback_equal_two_processes(runs):
    repo, out = runs["repo"], runs["root"] / "nodes"
    port = _free_port()
    cmd_base = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "2",
        "--nproc_per_node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{port}",
        "--rdzv-id",
        "sisu-test",
        "--local-addr",
        "127.0.0.1",
        "launch/sft.py",
        "--config",
        TINY,
        f"output_dir={out}",
        f"train.max_steps={STEPS}",
        f"data.cache_dir={runs['root'] / 'cache'}",
    ]
    procs = [
        subprocess.Popen(
            cmd_base, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=job_env()
        )
        for _ in range(2)
    ]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(log[-2000:] for log in logs)
    assert "2 node(s)" in "".join(logs)
    for a, b in zip(read_metrics(out), read_metrics(runs["two"])):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


def test_exact_resume_after_kill_9(runs):
    out = runs["root"] / "killed"
    killed = _sft(out, "checkpoint.every_steps=2", env={"SISU_DEBUG_SIGKILL_AFTER_STEP": "3"}, check=False)
    assert killed.returncode == -9
    assert len(read_metrics(out)) == 3  # steps 1-3 logged; the newest checkpoint is step 2
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_2"]
    _sft(out, "checkpoint.every_steps=2")
    resumed, straight = read_metrics(out), read_metrics(runs["one"])
    assert [m["step"] for m in resumed] == list(range(1, STEPS + 1))
    assert [m["loss"] for m in resumed] == [m["loss"] for m in straight]  # bitwise on CPU
    assert [m["grad_norm"] for m in resumed] == [m["grad_norm"] for m in straight]


def test_incomplete_checkpoint_is_ignored(runs, tmp_path):
    import shutil

    out = tmp_path / "partial"
    shutil.copytree(runs["one"] / "checkpoints", out / "checkpoints")
    (out / "checkpoints" / ".step_99.tmp").mkdir()
    proc = _sft(out, "train.max_steps=8")
    assert "ignoring incomplete checkpoint" in proc.stdout + proc.stderr
    assert "resumed from" in proc.stdout + proc.stderr
    assert [m["step"] for m in read_metrics(out)] == [7, 8]


def test_export_reloads_equals_checkpoint_and_generates(runs):
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = runs["one"] / "final"
    model = AutoModelForCausalLM.from_pretrained(final)
    tokenizer = AutoTokenizer.from_pretrained(final)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # still tied
    saved = runs["root"] / "ckpt.pt"
    dcp_to_torch_save(runs["one"] / "checkpoints" / f"step_{STEPS}", saved)
    trained = torch.load(saved, weights_only=False)["model"]
    state = model.state_dict()
    for key, value in trained.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hei"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**prompt, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] == prompt["input_ids"].shape[1] + 5 or out[0, -1] == tokenizer.eos_token_id


def test_neftune_off_reproduces_baseline_and_on_changes_loss(runs):
    off = runs["root"] / "neft0"
    on = runs["root"] / "neft5"
    _sft(off, "train.neftune_alpha=0.0", "train.max_steps=2")
    _sft(on, "train.neftune_alpha=5.0", "train.max_steps=2")
    base = read_metrics(runs["one"])[:2]
    assert [m["loss"] for m in read_metrics(off)] == pytest.approx([m["loss"] for m in base], rel=1e-6)
    assert read_metrics(on)[0]["loss"] != pytest.approx(base[0]["loss"], rel=1e-6)


def test_prompt_masking_counts_only_assistant_tokens(runs, tiny_tokenizer):
    from data.pipeline import build_dataset
    from data.sampler import StepSampler
    from runtime.config import load_config
    from trainer.jobs import SFTConfig

    repo = runs["repo"]
    out = runs["root"] / "masked"
    _sft(out, "data.prompt_masking=true", "train.max_steps=2")
    cfg = load_config(SFTConfig, os.path.join(repo, TINY), [f"output_dir={out}", "data.prompt_masking=true"])
    cwd = os.getcwd()
    os.chdir(repo)
    try:
        masked = build_dataset(
            cfg.data, tokenizer=tiny_tokenizer, max_seq_len=cfg.train.max_seq_len, use_cache=False
        )
    finally:
        os.chdir(cwd)
    sampler = StepSampler(
        masked.lengths(), global_batch_size=8, micro_batch_size=8, rank=0, world_size=1, seed=cfg.seed
    )
    expected = [
        sum(masked.dataset[i].num_target_tokens for i in sampler.step_indices(0, s)[0]) for s in (0, 1)
    ]
    got = [m["num_tokens"] for m in read_metrics(out)]
    assert got == expected
    unmasked = [m["num_tokens"] for m in read_metrics(runs["one"])[:2]]
    assert all(g < u for g, u in zip(got, unmasked))


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.micro_batch_size=3", "not divisible by train.micro_batch_size (3)"),
        ("train.lr=1", "unknown key 'train.lr'"),
        ("data.sources.0.path=missing.jsonl", "missing.jsonl"),
        ("model.tokenizer=./no/such/dir", "does not exist"),
    ],
)
def test_bad_config_and_data_fail_fast_with_one_line(runs, tmp_path, override, message):
    proc = _sft(tmp_path / "bad", override, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_dry_run_prints_plan(runs, tmp_path):
    cmd = [
        sys.executable,
        "launch/sft.py",
        "--config",
        TINY,
        "--dry-run",
        "--world-size",
        "2",
        f"output_dir={tmp_path}",
        f"data.cache_dir={tmp_path}",
    ]
    proc = subprocess.run(cmd, cwd=runs["repo"], capture_output=True, text=True, env=job_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "world size 2; micro batch 2, global batch 8, gradient accumulation 2" in proc.stdout
    assert "16 steps per epoch" in proc.stdout and "8 optimizer steps" in proc.stdout
    assert not (tmp_path / "metrics.jsonl").exists()
    hub = subprocess.run(
        [*cmd, "model.tokenizer=SomeOrg/not-cached"],
        cwd=runs["repo"],
        capture_output=True,
        text=True,
        env=job_env({"HF_HUB_OFFLINE": "1"}),
        timeout=300,
    )
    assert hub.returncode == 0 and "not reachable from here" in hub.stdout and "HF_HUB_OFFLINE" in hub.stdout


def test_exact_resume_with_neftune_noise_after_kill_9(runs):
    """Randomness in play: NEFTune draws noise every step from the per-rank RNG, which the checkpoint restores."""
    root = runs["root"]
    straight, killed = root / "neftune", root / "neftune_killed"
    common = ("checkpoint.every_steps=2", "train.neftune_alpha=5")
    _sft(straight, *common)
    proc = _sft(killed, *common, env={"SISU_DEBUG_SIGKILL_AFTER_STEP": "3"}, check=False)
    assert proc.returncode == -9
    _sft(killed, *common)
    a, b = read_metrics(straight), read_metrics(killed)
    assert [m["step"] for m in b] == list(range(1, STEPS + 1))
    assert [m["loss"] for m in b] == [m["loss"] for m in a]  # bitwise on CPU
    assert a[0]["loss"] != read_metrics(runs["one"])[0]["loss"]  # the noise is there


def test_resume_refuses_other_data_or_another_world_size(runs, tmp_path):
    import shutil

    out = tmp_path / "changed"
    shutil.copytree(runs["one"] / "checkpoints", out / "checkpoints")
    proc = _sft(out, "train.max_steps=8", "data.sources.0.max_records=60", check=False)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-2000:]
    assert "was written for other data: " in err[0] and "(records per source [66, 66] -> [60, 66])" in err[0]
    assert "resume=none" in err[0]
    proc = _sft(out, "train.max_steps=8", nproc=2, check=False)
    assert proc.returncode != 0
    assert "was written by 1 ranks and this run has 2" in proc.stdout + proc.stderr


def test_a_planted_pickle_in_a_checkpoint_is_refused_not_run(runs, tmp_path):
    """A checkpoint directory is shared project storage: a pickle planted there must never run as whoever
    resumes. It fails its checksum; with the checksum list rewritten to match, DCP's metadata is still checked
    against DCP's own classes before anything unpickles it; the RNG state is safetensors."""
    import hashlib
    import json
    import pickle
    import shutil

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    out = tmp_path / "planted"
    shutil.copytree(runs["one"] / "checkpoints", out / "checkpoints")
    newest = out / "checkpoints" / "step_6"
    planted = pickle.dumps(Payload())
    (newest / ".metadata").write_bytes(planted)
    proc = _sft(tmp_path / "fresh", "train.max_steps=8", f"resume={newest}", check=False)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-2000:]
    assert err[0].startswith(
        f"error: resume={newest}: the checkpoint is damaged (.metadata has {len(planted)} bytes, "
    )
    manifest = json.loads((newest / "checksums.json").read_text())
    manifest["files"][".metadata"] = {"sha256": hashlib.sha256(planted).hexdigest(), "bytes": len(planted)}
    (newest / "checksums.json").write_text(json.dumps(manifest))
    proc = _sft(out, "train.max_steps=8", check=False)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-2000:]
    assert "not a checkpoint's metadata sisu will load (it refers to posix.system" in err[0]
    assert not marker.exists()
    assert sorted(p.name for p in newest.iterdir() if p.name.startswith("rng")) == ["rng_rank0.safetensors"]


def ckpt_verifies(path) -> bool:
    from trainer import integrity

    try:
        integrity.verify(path, rank=0, world=1, step=int(path.name.split("_")[1]))
    except integrity.Damaged:
        return False
    return True


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(runs, tmp_path):
    import shutil

    out = tmp_path / "damaged"
    shutil.copytree(runs["one"] / "checkpoints", out / "checkpoints")
    shard = out / "checkpoints" / "step_6" / "__0_0.distcp"
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0x10  # one flipped bit in a weight
    shard.write_bytes(bytes(data))
    proc = _sft(out)
    log = proc.stdout + proc.stderr
    assert f"checkpoint {out}/checkpoints/step_6 is damaged (__0_0.distcp does not match its checksum)" in log
    assert f"resuming from {out}/checkpoints/step_4, the newest checkpoint that verifies" in log
    resumed, straight = read_metrics(out), read_metrics(runs["one"])
    assert [m["step"] for m in resumed] == [5, 6]
    assert [(m["loss"], m["grad_norm"]) for m in resumed] == [
        (m["loss"], m["grad_norm"]) for m in straight[4:]
    ]
    assert ckpt_verifies(out / "checkpoints" / "step_6")  # written again, whole


def test_every_checkpoint_damaged_is_refused_in_one_line(runs, tmp_path):
    import shutil

    out = tmp_path / "all_damaged"
    shutil.copytree(runs["one"] / "checkpoints", out / "checkpoints")
    size = (out / "checkpoints" / "step_6" / "trainer_state.json").stat().st_size
    (out / "checkpoints" / "step_6" / "trainer_state.json").write_text("{")
    (out / "checkpoints" / "step_4" / "rng_rank0.safetensors").unlink()
    proc = _sft(out, "train.max_steps=8", check=False)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-2000:]
    assert err[0] == (
        f"error: no checkpoint in {out}/checkpoints verifies (step_6: trainer_state.json has 1 bytes, {size} were "
        "written; step_4: rng_rank0.safetensors is missing); restore them, or resume=none to start over (which "
        "overwrites them)"
    )
    assert (
        "step_6 is damaged (trainer_state.json has 1 bytes" in proc.stdout
        and "trying the one before" in proc.stdout
    )
    assert "step_4 is damaged (rng_rank0.safetensors is missing); it is the oldest" in proc.stdout
    assert not (out / "metrics.jsonl").exists()


def test_a_full_disk_while_checkpointing_stops_every_rank_in_one_line(runs, tmp_path):
    """A real failed write under torchrun: RLIMIT_FSIZE makes every write past 300 kB fail with EFBIG, as a
    full disk fails with ENOSPC: the checkpoint shards (~600 kB a rank) cannot be written, the small files can."""
    import resource
    import signal

    out = tmp_path / "full"

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the failed write returns EFBIG instead of killing

    _sft(tmp_path / "warm", "train.max_steps=1")  # tokenizes, unlimited
    command = [*launcher(2), "launch/sft.py", "--config", TINY, f"output_dir={out}", f"train.max_steps={STEPS}",
               f"data.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    proc = subprocess.run(command, cwd=REPO, env=job_env(), capture_output=True, text=True, timeout=600,
                          preexec_fn=limit_file_size)  # fmt: skip
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if "could not write checkpoint" in line]
    assert len(lines) == 2, proc.stderr[-3000:]
    assert all(f"could not write checkpoint {out}/checkpoints/step_4 (rank " in line for line in lines)
    written = re.compile(
        r"(File too large|could not be written in full).* GB free there\); no earlier checkpoint: "
    )
    assert all(written.search(line) for line in lines), lines
    assert not [line for line in proc.stderr.splitlines() if line.startswith("[rank") and "Traceback" in line]
    assert "ignoring incomplete checkpoint" not in proc.stdout + proc.stderr
    assert not (out / "checkpoints").exists() or not any((out / "checkpoints").iterdir())
    assert [m["step"] for m in read_metrics(out)] == [1, 2, 3, 4]
