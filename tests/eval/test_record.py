"""eval/record.py: the one run record of eval, translate and make_pairs, and its one refusal shape."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from data.errors import SisuError
from eval.record import RECORD, check_record, run_identity, write_record

SHAPE = re.compile(
    r"^(?P<folder>\S+) holds (?P<what>responses|translations|samples) "
    r"(made with .+|without a record of the run that made them \(run\.json\)): "
    r"use another output_dir, or delete (?P<outputs>.+) to start over$"
)


class Template:
    name, source, end_of_turn = "chatml", "{{ messages }}", "<|im_end|>"


def _identity(**changes):
    parts = {
        "model": {"path": "models/a", "fingerprint": "f1"},
        "template": Template(),
        "decoding": {"max_new_tokens": 64, "do_sample": False},
        "sources": [{"path": "chats.jsonl"}],
        "settings": {"roles": ["user"], "cleaning": {"on": True}},
    }
    parts.update(changes)
    return run_identity(**parts)


def _outputs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "rows.jsonl"
    out.write_text('{"key": 1}\n', encoding="utf-8")
    return out


def test_the_same_record_continues_and_a_fresh_folder_needs_none(tmp_path):
    check_record(tmp_path / "new", _identity(), outputs=[tmp_path / "new" / "rows.jsonl"], what="samples")
    out = _outputs(tmp_path / "run")
    write_record(out.parent, _identity())
    check_record(out.parent, _identity(), outputs=[out], what="samples")
    assert (out.parent / RECORD).is_file()


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"model": {"path": "models/b", "fingerprint": "f2"}}, "made with a different model (models/a)"),
        ({"decoding": {"max_new_tokens": 8, "do_sample": False}}, "made with different decoding (max_new_tokens)"),
        ({"sources": [{"path": "other.jsonl"}]}, "made with different sources"),
        ({"settings": {"roles": ["user"], "cleaning": {"on": False}}}, "made with different settings (cleaning)"),
        ({"template": None}, "made with a different chat template"),
    ],
)
def test_any_change_is_refused_in_one_line_of_one_shape(tmp_path, changes, reason):
    out = _outputs(tmp_path / "run")
    write_record(out.parent, _identity())
    for what in ("responses", "translations", "samples"):
        with pytest.raises(SisuError) as info:
            check_record(out.parent, _identity(**changes), outputs=[out], what=what)
        message = str(info.value)
        match = SHAPE.match(message)
        assert match and match["what"] == what and match["outputs"] == str(out) and reason in message, message


def test_outputs_without_a_record_are_refused_alike(tmp_path):
    out = _outputs(tmp_path / "run")
    with pytest.raises(SisuError) as info:
        check_record(out.parent, _identity(), outputs=[out], what="translations")
    assert SHAPE.match(str(info.value)) and "without a record of the run that made them" in str(info.value)


def test_the_translation_job_refuses_outputs_without_a_record(tmp_path):
    """translate (and make_pairs) carried on over outputs without a record before; now they refuse like eval."""
    from eval.translation.job import check_settings
    from eval.translation.report import PROGRESS

    out = tmp_path / "translate"
    _outputs(out).rename(out / PROGRESS)
    with pytest.raises(SisuError, match=r"holds translations without a record .*progress\.jsonl to start over$"):
        check_settings(out, _identity())
