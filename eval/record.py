"""One run record for every generation job: what its outputs depend on, written beside them, checked on re-runs.

eval (one per benchmark folder), translate and make_pairs write `run.json`: the model (path, tokenizer, random
init, dtype and a fingerprint of the weights and tokenizer files), the chat template, the decoding settings, the
sources and the job's other settings that shape the outputs. A run continues earlier outputs only when its record
is the same; otherwise, or when outputs lie there without a record, it refuses in one line of one shape:

    <folder> holds <what> made with <a different model (its path) | a different chat template (name, ...) |
    different decoding (the keys) | different sources | different settings (the keys)>: use another output_dir, or
    delete <outputs> to start over
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data.errors import SisuError
from data.files import atomic_write_text
from runtime.fingerprint import model_fingerprint

RECORD = "run.json"
PARTS = {"model": "a different model", "template": "a different chat template", "decoding": "different decoding",
         "sources": "different sources", "settings": "different settings"}  # fmt: skip


def model_identity(model_cfg: Any, *, seed: int) -> dict:
    """The model as records name it: where it comes from and a fingerprint of what is there."""
    return {
        "path": model_cfg.path,
        "tokenizer": model_cfg.tokenizer,
        "init_config": model_cfg.init_config,
        "dtype": model_cfg.dtype,
        "fingerprint": model_fingerprint(model_cfg, seed=seed),
    }


def run_identity(
    *, model: dict, template: Any | None, decoding: dict, sources: Any = None, settings: dict | None = None
) -> dict:
    """A record: `model` from model_identity, the data.templates.ChatTemplate prompts are rendered with (None: the
    job writes its own prompts), the decoding settings, the sources and the rest of the settings."""
    return {
        "model": model,
        "template": None
        if template is None
        else {"name": template.name, "source": template.source, "end_of_turn": template.end_of_turn},
        "decoding": decoding,
        "sources": sources,
        "settings": settings or {},
    }


def check_record(
    directory: Path, identity: dict, *, outputs: Sequence[Path], what: str, name: str = RECORD
) -> None:
    """Refuse (one line) to continue `outputs` in `directory` unless its record (`name`) equals `identity`;
    nothing is checked while no output holds anything."""
    written = [path for path in outputs if path.is_file() and path.stat().st_size > 0]
    if not written:
        return
    record = directory / name
    if not record.is_file():
        reason = f"without a record of the run that made them ({name})"
    else:
        try:
            earlier = json.loads(record.read_text(encoding="utf-8"))
        except ValueError:
            earlier = {}
        changed = [part for part in PARTS if earlier.get(part) != identity.get(part)]
        if not changed:
            return
        reason = "made with " + " and ".join(
            f"{PARTS[part]}{_detail(part, earlier, identity)}" for part in changed
        )
    raise SisuError(
        f"{directory} holds {what} {reason}: use another output_dir, or delete "
        f"{', '.join(str(path) for path in written)} to start over"
    )


def _detail(part: str, earlier: dict, current: dict) -> str:
    """What differs, in brackets: the earlier model's path, or the keys of a section that changed."""
    before, now = earlier.get(part), current.get(part)
    if part == "model":
        return f" ({(before or {}).get('path')})"
    if isinstance(before, dict) and isinstance(now, dict):
        keys = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        return f" ({', '.join(keys)})" if keys else ""
    return ""


def write_record(directory: Path, identity: dict, *, name: str = RECORD) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / name, json.dumps(identity, indent=2, ensure_ascii=False) + "\n")
