"""Translation's pipeline (chunks, progress, report, outputs) with a fake translator, in process."""

import json
from pathlib import Path

import pytest

from data.config import SourceConfig
from data.errors import SisuError
from data.sources import load_source
from eval.translation.config import TranslateConfig
from eval.translation.job import build_prompt_and_cleaner, load_items, translate_all
from eval.translation.report import PROGRESS, finalize, format_summary
from eval.translation.translator import translate_chunk
from runtime.config import build_config, config_to_dict

# --- the pipeline with a fake translator -------------------------------------------------------------------

CHATS = [
    {
        "source_id": "c1",
        "messages": [
            {"role": "user", "content": "How do I print in Python?"},
            {
                "role": "assistant",
                "content": "Use the print function:\n\n```python\nprint('hi')\n```\n\n- It adds a newline.\n- It accepts many values.",
            },
        ],
    },
    {
        "source_id": "c2",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Name a Finnish lake."},
            {"role": "assistant", "content": "Saimaa."},
            {"role": "user", "content": "Another one, please."},
            {"role": "assistant", "content": "Päijänne."},
        ],
    },
    {
        "source_id": "c3",
        "messages": [{"role": "user", "content": "LOOP me"}, {"role": "assistant", "content": "ok"}],
    },
]
PAIRS = [
    {
        "source_id": "p1",
        "prompt": "Is water wet?",
        "chosen": "It depends on the definition.",
        "rejected": "No.",
    },
    {"source_id": "p2", "prompt": "Say SAME", "chosen": "SAME one", "rejected": "SAME two"},
]


def fake_translate(segments):
    """Deterministic: marks each segment; 'SAME ...' collapses to one text; 'LOOP' loops."""
    out = []
    for s in segments:
        if s.startswith("SAME"):
            out.append("sama")
        elif s.startswith("LOOP"):
            out.append("silmukka " * 6)
        else:
            out.append(f"fi[{s}]")
    return out


@pytest.fixture
def job(tmp_path):
    chat_path, pref_path = tmp_path / "chats.jsonl", tmp_path / "pairs.jsonl"
    chat_path.write_text("".join(json.dumps(r) + "\n" for r in CHATS), encoding="utf-8")
    pref_path.write_text("".join(json.dumps(r) + "\n" for r in PAIRS), encoding="utf-8")
    cfg = build_config(
        TranslateConfig,
        {
            "output_dir": str(tmp_path / "out"),
            "model": {"path": "unused"},
            "sources": [
                {"path": str(chat_path), "format": "messages"},
                {"path": str(pref_path), "format": "preference"},
            ],
            "items_per_chunk": 2,
            "cleaning": {"language": {"enabled": False}, "length_ratio": {"enabled": False}},
        },
    )
    (tmp_path / "out").mkdir()
    return cfg


def run_fake(cfg, translate=fake_translate):
    """The job's own chunked loop (eval/translation/job.translate_all) with a fake translator; `calls` are the
    item keys of each chunk translate_chunk got."""
    from unittest import mock

    import eval.translation.job as translation_job

    items, reports = load_items(cfg)
    _, clean = build_prompt_and_cleaner(cfg)
    calls = []

    def recording(chunk, **kwargs):
        calls.append([item.key for item in chunk])
        return translate_chunk(chunk, **kwargs)

    with mock.patch.object(translation_job, "translate_chunk", recording):
        translate_all(cfg, items, translate=translate, cleaner=clean, out_path=Path(cfg.output_dir) / PROGRESS)
    return items, reports, calls


def test_pipeline_outputs_report_and_load_back(job, capsys):
    items, reports, calls = run_fake(job)
    assert calls == [["0:0:c1", "0:1:c2"], ["0:2:c3", "1:0:p1"], ["1:1:p2"]]
    report = finalize(job, items, reports)
    out = Path(job.output_dir)
    assert report["items_in"] == 5 and report["items_out"] == 3 and report["removed"] == 2
    assert report["removed_by_reason"]["repetition"] == 1
    assert report["removed_by_reason"]["identical_pair"] == 1
    assert sum(report["removed_by_reason"].values()) == report["removed"]
    assert report["examples"]["repetition"][0]["source_id"] == "c3"
    assert report["settings"]["cleaning"]["language"]["enabled"] is False
    assert [s["output"] for s in report["sources"]] == ["chats.fi.jsonl", "pairs.fi.jsonl"]
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert [(r["source_id"], r["reasons"]) for r in rejected] == [
        ("c3", ["repetition"]),
        ("p2", ["identical_pair"]),
    ]
    assert json.loads((out / "report.json").read_text()) == report
    summary = format_summary(report)
    assert "5 items in, 3 out, 2 removed" in summary and "identical_pair" in summary

    chats, _ = load_source(SourceConfig(path=str(out / "chats.fi.jsonl"), format="messages"))
    assert [c.source_id for c in chats] == ["c1", "c2"] and {c.lang for c in chats} == {"fi"}
    assert chats[0].messages[1]["content"] == (
        "fi[Use the print function:]\n\n```python\nprint('hi')\n```\n\n- fi[It adds a newline.]\n"
        "- fi[It accepts many values.]"
    )
    assert chats[1].messages[0]["content"] == "fi[Be brief.]"
    rows = [json.loads(line) for line in (out / "chats.fi.jsonl").read_text().splitlines()]
    assert rows[1]["messages"][3]["orig_content"] == "Another one, please."
    pairs, _ = load_source(SourceConfig(path=str(out / "pairs.fi.jsonl"), format="preference"))
    assert [(p.source_id, p.chosen, p.rejected) for p in pairs] == [
        ("p1", "fi[It depends on the definition.]", "fi[No.]")
    ]
    originals, _ = load_source(SourceConfig(path=job.sources[1].path, format="preference"))
    assert {p.source_id for p in pairs} <= {p.source_id for p in originals}  # pairs with the original


def test_restart_skips_finished_items_and_drops_a_cut_line(job):
    items, reports, _ = run_fake(job)
    progress = Path(job.output_dir) / PROGRESS
    lines = progress.read_text().splitlines()
    assert len(lines) == 5
    # a kill during the third round: two rounds complete, then a cut line
    progress.write_text("\n".join(lines[:4]) + "\n" + lines[4][:25])
    _, _, calls = run_fake(job)
    assert calls == [["1:1:p2"]]
    keys = [json.loads(line)["key"] for line in progress.read_text().splitlines()]
    assert sorted(keys) == sorted(item.key for item in items) and len(keys) == len(set(keys))
    # nothing left to do: no work at all
    _, _, calls = run_fake(job)
    assert calls == []
    assert finalize(job, items, reports)["items_out"] == 3


def test_translator_failure_propagates_and_finalize_refuses_missing_items(job):
    def broken(segments):
        return ["x"] * (len(segments) - 1)

    with pytest.raises(RuntimeError, match="segments"):
        run_fake(job, translate=broken)
    items, reports = load_items(job)
    with pytest.raises(RuntimeError, match="missing"):
        finalize(job, items, reports)


def test_a_rerun_on_other_sources_is_refused(job, tmp_path):
    """Item keys are source index, position and source id: two datasets whose ids are row numbers would share
    them, so the recorded settings include the sources and another source list is refused."""
    from eval.record import write_record
    from eval.translation.job import check_settings, run_record

    out = Path(job.output_dir)
    write_record(out, run_record(job))
    (out / PROGRESS).write_text('{"key": "0:0:c1"}\n', encoding="utf-8")
    check_settings(out, run_record(job))  # the same sources continue
    other = tmp_path / "other.jsonl"
    other.write_text(Path(job.sources[0].path).read_text(encoding="utf-8"), encoding="utf-8")
    moved = build_config(
        TranslateConfig, {**config_to_dict(job), "sources": [{"path": str(other), "format": "messages"}]}
    )
    with pytest.raises(SisuError, match="holds translations made with different sources: use another output_dir"):
        check_settings(out, run_record(moved))


def test_a_translation_cut_by_its_budget_is_removed(job):
    class CuttingTranslator:
        budget_cut: list[str] = []

        def __call__(self, segments):
            self.budget_cut = [s for s in segments if s.startswith("LOOP")]
            return fake_translate(segments)

    items, reports, _ = run_fake(job, translate=CuttingTranslator())
    report = finalize(job, items, reports)
    assert report["removed_by_reason"]["budget_cut"] == 1
