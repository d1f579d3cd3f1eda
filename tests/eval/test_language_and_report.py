import json
import subprocess
import sys

import pytest

from eval.language import response_language_rate
from eval.report import load_run, table_rows, to_csv, to_markdown


def test_response_language_rate_on_hand_made_responses():
    rows = [
        {"key": 1, "response": "Tämä vastaus on kirjoitettu suomeksi, ja se kertoo säästä ja järvistä."},
        {"key": 2, "response": "This answer is written in English and talks about the weather."},
        {
            "key": 3,
            "response": "Helsinki on Suomen pääkaupunki, ja siellä asuu noin puoli miljoonaa ihmistä.",
        },
        {"key": 4, "response": ""},
        {"key": 5, "response": "12345 !!!"},
    ]
    rate, failed = response_language_rate(rows, "fi")
    assert rate == pytest.approx(2 / 5)
    assert failed == [2, 4, 5]
    rate_en, failed_en = response_language_rate(rows, "en")
    assert rate_en == pytest.approx(1 / 5) and failed_en == [1, 3, 4, 5]
    assert response_language_rate([], "fi") == (0.0, [])


def _fixture_run(root, name, en, fi, lang_rate):
    for bench, acc in (("ifeval_en", en), ("ifeval_fi", fi)):
        if acc is None:
            continue
        path = root / name / bench
        path.mkdir(parents=True)
        scores = {
            "inst_level_strict_acc": acc,
            "inst_level_loose_acc": acc + 0.01,
            "prompt_level_strict_acc": acc - 0.1,
            "prompt_level_loose_acc": acc - 0.05,
            "response_language_rate": lang_rate if bench == "ifeval_fi" else 0.99,
            "per_category": {
                "keywords": {"strict_acc": acc, "loose_acc": acc, "count": 3},
                "punctuation": {"strict_acc": 0.5, "loose_acc": 0.5, "count": 2},
            },
        }
        (path / "scores.json").write_text(json.dumps(scores))
    return root / name


def test_report_table_markdown_and_csv(tmp_path):
    a = _fixture_run(tmp_path, "baseline", 0.3997, 0.3448, 0.9568)
    b = _fixture_run(tmp_path, "dpo-both", 0.4469, 0.378, 0.9549)
    c = _fixture_run(tmp_path, "en-only", 0.25, None, None)
    rows = table_rows([load_run(a), load_run(b), load_run(c)])
    assert to_markdown(rows) == (
        "| run | EN (%) | FI (%) | Resp lang (%) |\n"
        "| --- | ---: | ---: | ---: |\n"
        "| baseline | 39.97 | 34.48 | 95.68 |\n"
        "| dpo-both | 44.69 | 37.80 | 95.49 |\n"
        "| en-only | 25.00 |  |  |\n"
    )
    assert to_csv(table_rows([load_run(a)], metric="prompt_level_strict_acc")).splitlines() == [
        "run,EN (%),FI (%),Resp lang (%)",
        "baseline,29.97,24.48,95.68",
    ]
    with pytest.raises(ValueError, match="unknown metric"):
        table_rows([load_run(a)], metric="accuracy")
    with pytest.raises(ValueError, match="no <benchmark>/scores.json"):
        load_run(tmp_path / "nothing")


def test_report_cli_writes_markdown_csv_and_chart(tmp_path, repo):
    a = _fixture_run(tmp_path, "sft", 0.4, 0.3, 0.9)
    b = _fixture_run(tmp_path, "dpo", 0.45, 0.35, 0.92)
    out = tmp_path / "rep" / "report.md"
    proc = subprocess.run(
        [sys.executable, "launch/report.py", str(a), str(b), "--out", str(out), "--names", "SFT", "DPO"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| SFT | 40.00 | 30.00 | 90.00 |" in out.read_text()
    assert (tmp_path / "rep" / "report.csv").read_text().splitlines()[2] == "DPO,45.00,35.00,92.00"
    assert (tmp_path / "rep" / "report_categories.png").stat().st_size > 1000
    bad = subprocess.run(
        [sys.executable, "launch/report.py", str(tmp_path / "missing")],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_report_names_runs_by_the_part_of_their_paths_that_differs(tmp_path, repo):
    """`launch/report.py outputs/poro34b/*/eval`: every row was "eval" and the figure kept only the last run."""
    from eval.report import run_names

    runs = []
    for name, en in (("sft_en_fi_0pct", 0.3), ("sft_en_fi_100pct", 0.4), ("dpo_both", 0.45)):
        (tmp_path / "poro34b" / name).mkdir(parents=True)
        runs.append(_fixture_run(tmp_path / "poro34b" / name, "eval", en, 0.3, 0.9))
    assert run_names(runs) == ["sft_en_fi_0pct", "sft_en_fi_100pct", "dpo_both"]
    assert run_names([runs[0], runs[0]]) == ["eval", "eval (2)"]
    assert run_names([runs[1]]) == ["eval"]
    out = tmp_path / "report.md"
    proc = subprocess.run(
        [sys.executable, "launch/report.py", *map(str, runs), "--out", str(out)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    table = out.read_text()
    assert (
        "| sft_en_fi_0pct | 30.00 |" in table and "| dpo_both | 45.00 |" in table and "| eval |" not in table
    )
    same = subprocess.run(
        [sys.executable, "launch/report.py", *map(str, runs[:2]), "--names", "A", "A", "--out", str(out)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert same.returncode == 2 and "--names must be distinct" in same.stderr


def test_judge_benchmarks_get_their_columns_beside_ifeval(tmp_path):
    """A run with a judge benchmark (scores.json with kind judge) adds its grade with the interval and its response
    language; a win rate only where some run compared with a baseline; runs without it leave the cells empty."""
    sft = _fixture_run(tmp_path, "sft", 0.40, 0.34, 0.95)
    dpo = _fixture_run(tmp_path, "dpo", 0.44, 0.37, 0.96)
    judged = {"kind": "judge", "response_language_rate": 0.875,
              "grades": {"mean": 6.25, "ci95": [5.5, 7.0], "num": 14, "num_judgements": 16}, "pairwise": None}  # fmt: skip
    (sft / "mtbench_fi").mkdir()
    (sft / "mtbench_fi" / "scores.json").write_text(json.dumps(judged))
    (dpo / "mtbench_fi").mkdir()
    compared = {**judged, "grades": {"mean": 7.0, "ci95": None}, "pairwise": {"win_rate": 0.625}}
    (dpo / "mtbench_fi" / "scores.json").write_text(json.dumps(compared))
    plain = _fixture_run(tmp_path, "base", 0.30, 0.20, 0.80)
    rows = table_rows([load_run(sft), load_run(dpo), load_run(plain)])
    assert rows[0][4:] == ["mtbench_fi grade (1-10)", "mtbench_fi resp lang (%)", "mtbench_fi win (%)"]
    assert rows[1][4:] == ["6.25 [5.5, 7.0] (14/16)", "87.50", ""]  # two of 16 judgements were parse failures
    assert rows[2][4:] == ["7.00", "87.50", "62.50"]
    assert rows[3][4:] == ["", "", ""]
