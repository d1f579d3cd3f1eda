"""launch/experiments.py: dependency order, skipping finished runs, stopping at the first failure."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from launch.experiments import FINISHED, load_matrix
from launch.jobs import JOBS

TINY_SFT = "recipes/test/tiny_sft.yaml"
TINY_EVAL = "recipes/test/tiny_eval.yaml"


def _matrix(tmp_path, spec: dict, name: str = "matrix.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


def _experiments(repo, *args):
    return subprocess.run(
        [sys.executable, "launch/experiments.py", *map(str, args)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _summary(stdout: str) -> dict[str, str]:
    """name -> status from the summary block."""
    rows = stdout.split("\nsummary:\n", 1)[1].splitlines()[:-1]  # the last line holds the counts
    return {words[0]: " ".join(words[2:-1]) for words in map(str.split, rows)}


def test_matrix_runs_in_dependency_order_then_skips_finished_runs(repo, shared, tmp_path):
    sft, ev = tmp_path / "sft", tmp_path / "eval"
    spec = {
        "runs": [  # the eval is listed first: only `after` puts it second
            {
                "name": "eval_tiny",
                "job": "eval",
                "config": TINY_EVAL,
                "after": ["sft_tiny"],
                "overrides": [f"model.path={sft}/final", f"output_dir={ev}", "generation.max_new_tokens=8"],
            },
            {
                "name": "sft_tiny",
                "job": "sft",
                "config": TINY_SFT,
                "nproc": 1,
                "overrides": [
                    "train.max_steps=2",
                    f"output_dir={sft}",
                    f"data.cache_dir={tmp_path / 'cache'}",
                ],
            },
        ],
        "report": {"runs": ["eval_tiny"], "out": str(tmp_path / "report.md")},
    }
    matrix = _matrix(tmp_path, spec)
    first = _experiments(repo, matrix)
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert out.index("[1/2] sft_tiny: running") < out.index("[2/2] eval_tiny: running")
    assert _summary(out) == {"sft_tiny": "ran", "eval_tiny": "ran", "report": "ran"}
    assert (sft / "final").is_dir()
    assert (ev / "ifeval_en" / "scores.json").is_file() and (ev / "ifeval_fi" / "scores.json").is_file()
    assert "eval_tiny" in (tmp_path / "report.md").read_text()
    metrics = (sft / "metrics.jsonl").stat().st_mtime_ns

    second = _experiments(repo, matrix)
    assert second.returncode == 0, second.stderr
    assert "running" not in second.stdout
    assert "[1/2] sft_tiny: skipped (finished:" in second.stdout
    assert "[2/2] eval_tiny: skipped (finished:" in second.stdout
    assert _summary(second.stdout) == {"sft_tiny": "skipped", "eval_tiny": "skipped", "report": "skipped"}
    assert "0 ran, 3 skipped, 0 failed, 0 not run" in second.stdout
    assert (sft / "metrics.jsonl").stat().st_mtime_ns == metrics  # nothing was started


def test_first_failure_stops_the_matrix(repo, tmp_path):
    spec = {
        "runs": [
            {
                "name": "bad_eval",
                "job": "eval",
                "config": TINY_EVAL,
                "overrides": [f"model.path={tmp_path / 'no_such_model'}", f"output_dir={tmp_path / 'eval'}"],
            },
            {
                "name": "sft_later",
                "job": "sft",
                "config": TINY_SFT,
                "overrides": [f"output_dir={tmp_path / 'sft'}"],
            },
        ]
    }
    proc = _experiments(repo, _matrix(tmp_path, spec))
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: run 'bad_eval' failed with exit status 2: ")
    assert _summary(proc.stdout) == {"bad_eval": "failed", "sft_later": "not run"}
    assert not (tmp_path / "sft").exists()


@pytest.mark.parametrize(
    ("runs", "message"),
    [
        (
            [
                {"name": "a", "job": "sft", "config": TINY_SFT, "after": ["b"]},
                {"name": "b", "job": "sft", "config": TINY_SFT, "after": ["a"]},
            ],
            "the 'after' lists form a cycle among: a, b",
        ),
        (
            [{"name": "a", "job": "sft", "config": TINY_SFT, "after": ["z"]}],
            "run 'a': 'after' names unknown run 'z'",
        ),
        ([{"name": "a", "job": "train", "config": TINY_SFT}], "run 'a': unknown job 'train'"),
        ([{"name": "a", "job": "sft", "config": TINY_SFT, "gpus": 8}], "runs[0]: unknown key(s) gpus"),
        (
            [{"name": "a", "job": "sft", "config": TINY_SFT, "overrides": ["train.max_step=3"]}],
            "did you mean",
        ),
        (
            [
                {"name": "a", "job": "sft", "config": TINY_SFT},
                {"name": "a", "job": "sft", "config": TINY_SFT},
            ],
            "run name 'a' is used twice",
        ),
    ],
)
def test_matrix_errors_are_one_line_before_anything_runs(runs, message, repo, tmp_path):
    proc = _experiments(repo, _matrix(tmp_path, {"runs": runs}))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert proc.stdout == ""


def test_finished_rules(tmp_path):
    def cfg(**kw):
        return type("Cfg", (), {"output_dir": str(tmp_path), **kw})()

    assert not FINISHED["sft"](cfg())[0]
    (tmp_path / ".final.tmp").mkdir()  # an export in progress does not count
    assert not FINISHED["dpo"](cfg())[0]
    (tmp_path / "final").mkdir()
    assert FINISHED["sft"](cfg())[0] and FINISHED["dpo"](cfg())[0]

    benches = [type("B", (), {"name": n})() for n in ("ifeval_en", "ifeval_fi")]
    (tmp_path / "ifeval_en").mkdir()
    (tmp_path / "ifeval_en" / "scores.json").write_text("{}")
    done, why = FINISHED["eval"](cfg(benchmarks=benches))
    assert not done and why.endswith("ifeval_fi/scores.json")
    (tmp_path / "ifeval_fi").mkdir()
    (tmp_path / "ifeval_fi" / "scores.json").write_text("{}")
    assert FINISHED["eval"](cfg(benchmarks=benches))[0]

    assert not FINISHED["translate"](cfg())[0] and not FINISHED["make_pairs"](cfg())[0]
    (tmp_path / "pairs.jsonl").write_text("")  # make_pairs writes its report last
    assert not FINISHED["make_pairs"](cfg())[0]
    (tmp_path / "report.json").write_text("{}")
    assert FINISHED["translate"](cfg())[0] and FINISHED["make_pairs"](cfg())[0]
    assert set(FINISHED) == set(JOBS)


def test_demo_matrix_is_valid_and_ordered(repo, monkeypatch):
    monkeypatch.chdir(repo)
    runs, report = load_matrix("recipes/demo/experiments.yaml")
    names = [run.name for run in runs]
    for run in runs:
        assert all(names.index(dep) < names.index(run.name) for dep in run.after)
        assert run.nproc == 2
    assert {run.job for run in runs} == {"sft", "eval"}
    evals = {run.name: run for run in runs if run.job == "eval"}
    assert report["runs"] == list(evals)
    for run in evals.values():  # each eval reads the model its SFT run exports
        (dep,) = run.after
        assert run.cfg.model.path == f"{next(r for r in runs if r.name == dep).cfg.output_dir}/final"
    fractions = {run.name: [s.fraction for s in run.cfg.data.sources] for run in runs if run.job == "sft"}
    assert fractions == {
        "sft_en_fi_0pct": [1.0],
        "sft_en_fi_10pct": [1.0, 0.1],
        "sft_en_fi_100pct": [1.0, 1.0],
    }


def test_demo_table2_matrix_wires_the_pairs_into_dpo(repo, monkeypatch):
    """recipes/demo/table2.yaml: the pairs come from the SFT model, the pair DPO runs read them and start from that
    model, and every model is evaluated on the same prompts."""
    monkeypatch.chdir(repo)
    runs, report = load_matrix("recipes/demo/table2.yaml")
    by_name = {run.name: run for run in runs}
    sft = by_name["sft"].cfg.output_dir
    pairs = by_name["pairs_fi"]
    assert pairs.job == "make_pairs" and pairs.cfg.model.path == f"{sft}/final" and pairs.after == ["sft"]
    for name in ("dpo_both", "dpo_both_pairs", "dpo_pairs"):
        run = by_name[name]
        assert run.job == "dpo" and run.cfg.model.path == f"{sft}/final"
        reads_pairs = f"{pairs.cfg.output_dir}/pairs.jsonl" in [s.path for s in run.cfg.data.sources]
        assert reads_pairs == (name != "dpo_both") and (("pairs_fi" in run.after) == reads_pairs)
    evals = [run for run in runs if run.job == "eval"]
    assert report["runs"] == [run.name for run in evals]
    assert len({tuple((b.path, b.limit) for b in run.cfg.benchmarks) for run in evals}) == 1
