"""``python -m eval.ifeval`` end to end on the 541 English prompts, and its error handling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from harness import REPO

from eval.ifeval.cli import main

# For single-instruction prompts: a response that follows the instruction and one that does not.
PASS_FAIL = {
    "punctuation:no_comma": (lambda kw, p: "No commas here at all", lambda kw, p: "One, two"),
    "detectable_format:title": (lambda kw, p: "<<A Title>>\nBody", lambda kw, p: "No title"),
    "startend:quotation": (lambda kw, p: '"Quoted answer"', lambda kw, p: "Plain answer"),
    "detectable_format:json_format": (lambda kw, p: '{"a": 1}', lambda kw, p: "not json"),
    "change_case:english_lowercase": (
        lambda kw, p: "this is an english answer written in lowercase letters only",
        lambda kw, p: "This Is Title Case English Text Here",
    ),
    "change_case:english_capital": (
        lambda kw, p: "THIS IS AN ENGLISH ANSWER WRITTEN IN CAPITAL LETTERS ONLY",
        lambda kw, p: "this is lower case",
    ),
    "combination:two_responses": (
        lambda kw, p: "First answer here.\n******\nSecond answer there.",
        lambda kw, p: "Only one",
    ),
    "detectable_format:constrained_response": (lambda kw, p: "My answer is yes.", lambda kw, p: "Yes"),
    "detectable_content:number_placeholders": (
        lambda kw, p: " ".join(f"[p{i}]" for i in range(kw["num_placeholders"])),
        lambda kw, p: "no placeholders here",
    ),
    "keywords:existence": (lambda kw, p: " ".join(kw["keywords"]), lambda kw, p: "xyz"),
    "detectable_content:postscript": (
        lambda kw, p: f"Body.\n{kw['postscript_marker']} note",
        lambda kw, p: "Body only",
    ),
    "combination:repeat_prompt": (lambda kw, p: kw["prompt_to_repeat"] + " Answer.", lambda kw, p: "Answer."),
    "startend:end_checker": (
        lambda kw, p: "Body. " + kw["end_phrase"],
        lambda kw, p: kw["end_phrase"] + " extra",
    ),
}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "eval.ifeval", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def _write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_end_to_end_on_ifeval(tmp_path, shared):
    prompts_path = shared / "ifeval" / "input_data.jsonl"
    prompts = [json.loads(line) for line in prompts_path.read_text(encoding="utf-8").splitlines()]
    expected: dict[int, bool] = {}
    rows = []
    turn: dict[str, int] = {}
    for p in prompts:
        response = ""  # an empty response fails every instruction
        ids = p["instruction_id_list"]
        if len(ids) == 1 and ids[0] in PASS_FAIL:
            n = turn.get(ids[0], 0)
            turn[ids[0]] = n + 1
            follow = n % 2 == 0
            response = PASS_FAIL[ids[0]][0 if follow else 1](p["kwargs"][0], p["prompt"])
            expected[p["key"]] = follow
        # the reference's format: matched by prompt text
        rows.append({"prompt": p["prompt"], "response": response})
    responses = _write_jsonl(tmp_path / "responses.jsonl", rows)
    assert len(expected) > 60 and set(turn) == set(PASS_FAIL)

    result = _run(
        "--prompts", str(prompts_path), "--responses", str(responses), "--out", str(tmp_path / "out")
    )
    assert result.returncode == 0, result.stderr
    assert "prompt-level" in result.stdout and "instruction-level" in result.stdout

    verdicts = [json.loads(line) for line in (tmp_path / "out" / "verdicts.jsonl").read_text().splitlines()]
    assert len(verdicts) == 541
    for v in verdicts:
        assert set(v) == {
            "key",
            "prompt",
            "instruction_id_list",
            "follow_instruction_list_strict",
            "follow_instruction_list_loose",
        }
        want = [expected.get(v["key"], False)] * len(v["instruction_id_list"])
        assert v["follow_instruction_list_strict"] == want, v["key"]
        assert v["follow_instruction_list_loose"] == want, v["key"]

    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    passed = sum(expected.values())
    assert scores["prompt_level_strict_acc"] == pytest.approx(passed / 541)
    assert scores["inst_level_strict_acc"] == pytest.approx(passed / 834)
    assert scores["prompt_level_loose_acc"] == pytest.approx(passed / 541)
    assert scores["inst_level_loose_acc"] == pytest.approx(passed / 834)
    assert scores["counts"]["prompts_scored"] == 541
    assert scores["per_instruction"]["detectable_format:title"]["count"] == 37
    assert scores["per_category"]["punctuation"]["count"] == 66
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scores.json", "verdicts.jsonl"]


def test_exclude_other_languages_and_keys(tmp_path, shared):
    prompts_path = shared / "ifeval" / "input_data.jsonl"
    keys = [json.loads(line)["key"] for line in prompts_path.read_text(encoding="utf-8").splitlines()]
    responses = _write_jsonl(tmp_path / "r.jsonl", [{"key": k, "response": "x"} for k in keys])
    code = main(
        [
            "--prompts",
            str(prompts_path),
            "--responses",
            str(responses),
            "--out",
            str(tmp_path / "o"),
            "--exclude-other-languages",
        ]
    )
    assert code == 0
    assert json.loads((tmp_path / "o" / "scores.json").read_text())["counts"]["prompts_scored"] == 510


@pytest.fixture
def small(tmp_path):
    prompts = _write_jsonl(
        tmp_path / "prompts.jsonl",
        [
            {"key": 1, "prompt": "a", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
            {"key": 2, "prompt": "b", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
            {"key": 3, "prompt": "c", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
        ],
    )
    return tmp_path, prompts


def test_missing_responses_are_an_error_unless_allowed(small, capsys):
    tmp_path, prompts = small
    responses = _write_jsonl(tmp_path / "r.jsonl", [{"key": 1, "response": "ok"}])
    out = tmp_path / "out"
    assert main(["--prompts", str(prompts), "--responses", str(responses), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "2 prompt(s) have no response: 2, 3" in err and err.count("\n") == 1
    assert not out.exists()
    assert (
        main(["--prompts", str(prompts), "--responses", str(responses), "--out", str(out), "--allow-missing"])
        == 0
    )
    scores = json.loads((out / "scores.json").read_text())
    assert scores["counts"]["prompts_scored"] == 1 and scores["counts"]["prompts_missing_response"] == 2


@pytest.mark.parametrize(
    ("which", "lines", "message"),
    [
        (
            "prompts",
            ['{"key": 1, "prompt": "a", "instruction_id_list": [], "kwargs": []}', "{oops"],
            "prompts.jsonl:2: invalid JSON",
        ),
        ("prompts", ['{"key": 1, "instruction_id_list": []}'], "prompts.jsonl:1: missing field 'prompt'"),
        (
            "prompts",
            ['{"key": 1, "prompt": "a", "instruction_id_list": ["x:y"], "kwargs": [{}]}'],
            "unknown instruction id 'x:y'",
        ),
        (
            "prompts",
            ['{"key": 1, "prompt": "a", "instruction_id_list": ["punctuation:no_comma"], "kwargs": []}'],
            "'kwargs' has 0 entries",
        ),
        (
            "responses",
            ['{"key": 1, "response": "a"}', "", '{"key": 2}'],
            "responses.jsonl:3: missing field 'response'",
        ),
        (
            "responses",
            ['{"key": 1, "response": null}'],
            "responses.jsonl:1: field 'response' must be a string",
        ),
        ("responses", ['{"response": "a"}'], "responses.jsonl:1: needs a 'key' or a string 'prompt'"),
        (
            "responses",
            ['{"key": 1, "response": "a"}', '{"key": "1", "response": "b"}'],
            "responses.jsonl:2: duplicate key",
        ),
        ("responses", ["[1, 2]"], "responses.jsonl:1: expected a JSON object"),
    ],
)
def test_bad_input_is_a_one_line_error(small, which, lines, message):
    tmp_path, prompts = small
    responses = _write_jsonl(tmp_path / "responses.jsonl", [{"key": k, "response": "x"} for k in (1, 2, 3)])
    target = prompts if which == "prompts" else responses
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    result = _run("--prompts", str(prompts), "--responses", str(responses), "--out", str(out))
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_unreadable_files_and_bad_options(small, capsys):
    tmp_path, prompts = small
    assert (
        main(
            [
                "--prompts",
                str(tmp_path / "nope.jsonl"),
                "--responses",
                str(prompts),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "nope.jsonl" in capsys.readouterr().err
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00garbage\n")
    assert (
        main(
            [
                "--prompts",
                str(tmp_path / "bin.jsonl"),
                "--responses",
                str(prompts),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "not UTF-8" in capsys.readouterr().err
    responses = _write_jsonl(tmp_path / "r.jsonl", [{"key": k, "response": "x"} for k in (1, 2, 3)])
    assert (
        main(
            [
                "--prompts",
                str(prompts),
                "--responses",
                str(responses),
                "--out",
                str(tmp_path / "o"),
                "--language",
                "EN",
            ]
        )
        == 2
    )
    assert "ISO 639-1" in capsys.readouterr().err


def test_failed_run_leaves_previous_outputs_intact(small):
    tmp_path, prompts = small
    out = tmp_path / "out"
    good = _write_jsonl(tmp_path / "good.jsonl", [{"key": k, "response": "x"} for k in (1, 2, 3)])
    assert main(["--prompts", str(prompts), "--responses", str(good), "--out", str(out)]) == 0
    before = (out / "scores.json").read_text()
    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"key": 1, "response": "x"}])
    assert main(["--prompts", str(prompts), "--responses", str(bad), "--out", str(out)]) == 2
    assert (out / "scores.json").read_text() == before
    assert sorted(p.name for p in out.iterdir()) == ["scores.json", "verdicts.jsonl"]


def test_finnish_set_through_the_cli(tmp_path):
    data = REPO / "eval" / "ifeval" / "data"
    args = [
        "--prompts",
        str(data / "fi_test_prompts.jsonl"),
        "--responses",
        str(data / "fi_test_responses.jsonl"),
    ]
    assert main([*args, "--out", str(tmp_path / "fi"), "--language", "fi"]) == 0
    assert main([*args, "--out", str(tmp_path / "lumi"), "--language", "fi", "--compat", "lumiopen"]) == 0
    fi = json.loads((tmp_path / "fi" / "scores.json").read_text())
    lumi = json.loads((tmp_path / "lumi" / "scores.json").read_text())
    assert fi["settings"]["compat"] is None and lumi["settings"]["compat"] == "lumiopen"
    assert fi["inst_level_strict_acc"] > lumi["inst_level_strict_acc"]
