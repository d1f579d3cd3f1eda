"""The benchmarks' synthetic data (bench/synthetic.py and bench/harness.py): deterministic, readable by sisu's loaders, long-tailed.

No timing here: timings live in bench/.
"""

from __future__ import annotations

import sys

import pytest
from harness import REPO

sys.path.insert(0, str(REPO))

from bench import synthetic  # noqa: E402
from data.sources import messages as messages_source  # noqa: E402
from data.sources import preference as preference_source  # noqa: E402


def test_records_are_deterministic_and_independent_of_the_count():
    assert synthetic.make_sft_records(40, seed=3) == synthetic.make_sft_records(40, seed=3)
    assert synthetic.make_sft_records(10, seed=3) == synthetic.make_sft_records(40, seed=3)[:10]
    assert synthetic.make_sft_records(10, seed=3) != synthetic.make_sft_records(10, seed=4)
    assert synthetic.make_preference_records(30, seed=1) == synthetic.make_preference_records(30, seed=1)
    assert synthetic.make_preference_records(5, seed=1) == synthetic.make_preference_records(30, seed=1)[:5]


def test_written_file_is_byte_identical(tmp_path):
    a = synthetic.write_jsonl(synthetic.make_preference_records(20, seed=0), tmp_path / "a.jsonl")
    b = synthetic.write_jsonl(synthetic.make_preference_records(20, seed=0), tmp_path / "b.jsonl")
    assert a.read_bytes() == b.read_bytes()


def test_sisu_loaders_accept_the_records():
    for i, row in enumerate(synthetic.make_sft_records(50, seed=0)):
        record = messages_source.parse_row(row, origin=f"sft:{i}", lang=None)
        assert record.messages[-1]["role"] == "assistant"
    for i, row in enumerate(synthetic.make_preference_records(50, seed=0)):
        record = preference_source.parse_row(row, origin=f"pref:{i}", lang=None)
        assert record.prompt[-1]["role"] == "user"
        assert record.chosen.strip() != record.rejected.strip()


def test_text_looks_like_english_and_has_the_asked_word_count():
    import random

    text = synthetic.synthetic_text(random.Random(0), 200)
    assert abs(len(text.split()) - 200) <= 1
    assert text[0].isupper() and text.rstrip()[-1] in ".?"
    assert all(word.strip(".,?").lower().isalpha() or word[:-1].isdigit() for word in text.split())


def test_lognormal_draws_have_the_requested_median_and_p90():
    import random

    rng = random.Random(0)
    draws = [synthetic.draw_total_tokens(rng) for _ in range(20000)]
    assert synthetic.percentile(draws, 50) == pytest.approx(synthetic.MEDIAN_TOKENS, rel=0.03)
    assert synthetic.percentile(draws, 90) == pytest.approx(synthetic.P90_TOKENS, rel=0.03)


def test_token_lengths_follow_the_long_tail(smollm2_tokenizer):
    sft = synthetic.sft_token_lengths(synthetic.make_sft_records(400, seed=0), smollm2_tokenizer)
    assert synthetic.percentile(sft, 50) == pytest.approx(250, rel=0.12)
    assert synthetic.percentile(sft, 90) == pytest.approx(800, rel=0.12)
    pairs, prompts = synthetic.preference_token_lengths(
        synthetic.make_preference_records(400, seed=0, max_prompt_tokens=256), smollm2_tokenizer
    )
    assert synthetic.percentile(pairs, 50) == pytest.approx(250, rel=0.12)
    assert synthetic.percentile(pairs, 90) == pytest.approx(800, rel=0.12)
    assert max(prompts) < 256  # sisu's prompt limit never applies, so sisu and TRL see the same tokens
    summary = synthetic.length_summary(sft, max_len=512)
    assert summary["p90_after_truncation"] == 512 and 0.1 < summary["share_over_max_len"] < 0.35


def test_percentile_and_padding_share():
    assert synthetic.percentile([1, 2, 3, 4], 50) == 2.5
    assert synthetic.percentile([5], 90) == 5
    assert synthetic.padding_share([100, 100, 50, 150], micro_batch=2, max_len=512) == 0.2
    assert synthetic.padding_share([100, 900], micro_batch=2, max_len=512) == pytest.approx(
        1 - 612 / 1024, abs=1e-3
    )


def test_gpu_mfu_smoke_runs_the_trainer_and_reports(tmp_path):
    """bench/gpu_mfu.py --smoke: the same plumbing as the GPU run (synthetic chats, packing, launch/sft.py,
    metrics -> one JSON line) on a tiny CPU model. No MFU on CPU: the device table has no peak for it."""
    import json
    import subprocess

    proc = subprocess.run(
        [sys.executable, "bench/gpu_mfu.py", "--smoke", "--no-append", "--workdir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    assert line["bench"] == "gpu_mfu" and line["device"] == "cpu"
    assert line["mfu_median"] is None and line["target"]["met"] is False
    assert len(line["step_seconds"]) == 2 and line["settings"]["examples_per_step"] % 2 == 0
    assert 0.5 < line["padding_efficiency_median"] <= 1.0
    assert line["tokens_per_second_per_device"] > 0


def test_gpu_check_smoke_runs_every_job_and_prints_one_line(tmp_path):
    """bench/gpu_check.py --smoke: the jobs of the GPU check (BLOOM and Llama SFT, DPO, eval; two ranks for SFT,
    precomputed DPO and sharded eval) with tiny models on the CPU, and the one JSON line it prints."""
    import json
    import subprocess

    proc = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--smoke", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["ok"] is True and result["failures"] == [] and result["device"]["name"] == "cpu"
    assert set(result["jobs"]) == {
        "bloom_sft", "llama_sft", "bloom_dpo_live", "llama_dpo_live", "bloom_eval", "llama_eval",
        "bloom_sft_2ranks", "llama_dpo_precompute_2ranks", "bloom_eval_2ranks",
    }  # fmt: skip
    assert result["jobs"]["bloom_sft_2ranks"]["max_rel_loss_diff_vs_1_rank"] <= 1e-5
    assert all(abs(result["jobs"][j]["first_loss_minus_ln2"]) < 1e-6 for j in result["jobs"] if "dpo" in j)
    assert json.loads((tmp_path / "gpu_check.json").read_text()) == result
