"""launch/make_pairs.py on recipes/test/tiny_pairs.yaml (a random tiny Llama with a word-level Finnish/English
tokenizer): counts that add up, pairs that follow the rule, a second run that adds nothing, 2 ranks = 1, a killed
run that continues to the same pairs, other settings refused, and pairs that DPO and inspect_data load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from harness import REPO, run_job

RECIPE = "recipes/test/tiny_pairs.yaml"


def _run(script, *args, nproc=1, check=True):
    return run_job(script, None, *args, nproc=nproc, check=check)


def _pairs(out, *overrides, nproc=1, check=True):
    return _run(
        "launch/make_pairs.py", "--config", RECIPE, f"output_dir={out}", *overrides, nproc=nproc, check=check
    )


def _rows(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs") / "one_rank"
    proc = _pairs(out)
    return out, proc.stdout + proc.stderr


def test_counts_add_up_and_every_pair_follows_the_rule(reference):
    from eval.ifeval import check_responses, load_prompts
    from eval.ifeval.langid import detect_language
    from eval.pairs.config import PairsConfig
    from runtime.config import load_config
    from runtime.fingerprint import model_fingerprint

    out, log = reference
    report = json.loads((out / "report.json").read_text())
    assert report["prompts_in"] == 10  # 4 chats + 6 instruction prompts
    assert report["prompts_in"] == report["pairs_out"] + sum(report["skipped_by_reason"].values())
    assert report["skipped_by_reason"]["benchmark_prompt"] == 1
    assert report["skipped_examples"]["benchmark_prompt"] == "i0:copied-benchmark-9001"
    assert report["pairs_out"] >= 4
    assert f"make_pairs: {report['pairs_out']} pairs from 10 prompts" in log

    cfg = load_config(PairsConfig, REPO / RECIPE, [])
    fingerprint = model_fingerprint(cfg.model, seed=cfg.seed)
    instructions = {f"i0:{p.key}": p for p in load_prompts(REPO / "recipes/test/pairs_prompts.jsonl")}
    pairs = _rows(out / "pairs.jsonl")
    samples = _rows(out / "samples.jsonl")
    assert len(pairs) == report["pairs_out"] and len(samples) == 9 * 6 == report["answers"]
    assert "i0:copied-benchmark-9001" not in {s["key"] for s in samples}  # never even sampled
    for pair in pairs:
        assert pair["lang"] == "fi" and pair["model_fingerprint"] == fingerprint
        assert pair["chosen_language"] == detect_language(pair["chosen"].strip()) == "fi"
        assert pair["rejected_language"] == detect_language(pair["rejected"].strip())
        prompt = instructions.get(pair["key"])
        if prompt is None:
            assert pair["chosen_verdicts"] is None and pair["rejected_verdicts"] is None
            assert pair["rejected_language"] != "fi"
        else:
            (chosen, _), (rejected, _) = check_responses(
                prompt, [pair["chosen"], pair["rejected"]], language="fi"
            )
            assert pair["chosen_verdicts"] == chosen and pair["rejected_verdicts"] == rejected
            assert pair["rejected_language"] != "fi" or sum(rejected) < sum(chosen)
        mine = [s for s in samples if s["key"] == pair["key"]]
        roles = {s["role"]: s["response"] for s in mine if s["role"]}
        assert roles == {"chosen": pair["chosen"], "rejected": pair["rejected"]}
        # no target-language answer of this prompt follows more instructions than the chosen one
        best = max(sum(s["verdicts"] or []) for s in mine if s["language"] == "fi")
        assert sum(pair["chosen_verdicts"] or []) == best


def test_pairs_load_as_a_preference_source_in_dpo_and_inspect_data(reference, tmp_path):
    from data.config import SourceConfig
    from data.sources import load_source

    out, _ = reference
    records, report = load_source(SourceConfig(path=str(out / "pairs.jsonl"), format="preference"))
    assert len(records) == report.num_rows and not report.skipped
    assert all(r.lang == "fi" and r.prompt[-1]["role"] == "user" for r in records)
    source = f"data.sources=[{{path: {out / 'pairs.jsonl'}, format: preference}}]"
    shown = _run("launch/inspect_data.py", "--config", "recipes/test/tiny_dpo.yaml", source)
    assert f"{out / 'pairs.jsonl'}: {len(records)} rows -> {len(records)} records" in shown.stdout
    trained = _run(
        "launch/dpo.py", "--config", "recipes/test/tiny_dpo.yaml", source, f"output_dir={tmp_path / 'dpo'}",
        "train.max_steps=1", "train.global_batch_size=4",
    )  # fmt: skip
    metrics = _rows(tmp_path / "dpo" / "metrics.jsonl")
    assert [m["step"] for m in metrics if "loss" in m] == [1], trained.stdout[-2000:]


def test_a_second_run_adds_nothing(reference, tmp_path):
    out, _ = reference
    again = tmp_path / "again"
    shutil.copytree(out, again)
    proc = _pairs(again)
    assert "make_pairs: 9 of 9 prompts already in" in proc.stdout + proc.stderr
    assert "prompts/s" not in proc.stdout + proc.stderr  # no round ran: nothing was generated
    for name in ("generations.jsonl", "pairs.jsonl", "samples.jsonl", "report.json"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name


def test_two_ranks_write_the_same_pairs(reference, tmp_path):
    out, _ = reference
    two = tmp_path / "two"
    _pairs(two, nproc=2)
    for name in ("pairs.jsonl", "samples.jsonl", "report.json"):
        assert (two / name).read_bytes() == (out / name).read_bytes(), name


def test_a_killed_run_continues_to_the_same_pairs(reference, tmp_path):
    out, _ = reference
    killed = tmp_path / "killed"
    killed.mkdir()
    shutil.copy(out / "run.json", killed / "run.json")
    lines = (out / "generations.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    # five rows survived the kill, then a line cut mid-write (rows are in prompt order, batches in length order:
    # some batches are partly written, and are generated whole again from their own seed)
    (killed / "generations.jsonl").write_text("".join(lines[:5]) + lines[5][:40], encoding="utf-8")
    proc = _pairs(killed)
    assert "make_pairs: 5 of 9 prompts already in" in proc.stdout + proc.stderr
    for name in ("generations.jsonl", "pairs.jsonl", "samples.jsonl"):
        assert (killed / name).read_bytes() == (out / name).read_bytes(), name


def test_a_run_with_other_settings_is_refused(reference, tmp_path):
    out, _ = reference
    other = tmp_path / "other"
    shutil.copytree(out, other)
    proc = _pairs(other, "generation.temperature=0.5", check=False)
    error = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "holds samples made with different decoding (temperature): use another output_dir, or delete" in error
    assert (other / "pairs.jsonl").read_bytes() == (out / "pairs.jsonl").read_bytes()  # nothing rewritten
