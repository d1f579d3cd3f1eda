"""Reading IFEval prompts (IFEval schema) and model responses."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data.errors import DataError  # sisu's one data error: pure Python, no torch

from .checkers import REGISTRY, Settings, build_check
from .text import make_text_tools

Key = int | str


@dataclass(frozen=True)
class Prompt:
    """One IFEval row: the prompt and its verifiable instructions with their kwargs."""

    key: Key | None
    prompt: str
    instruction_id_list: tuple[str, ...]
    kwargs: tuple[dict[str, Any], ...] = field(default=())

    def response_languages(self) -> list[str]:
        """Languages that this prompt's ``language:response_language`` instructions ask for."""
        return [
            str(kw.get("language"))
            for iid, kw in zip(self.instruction_id_list, self.kwargs)
            if iid == "language:response_language"
        ]


# Used only to validate kwargs at load time; any settings would do.
_VALIDATION_SETTINGS = Settings(text=make_text_tools("builtin", "en"))


def _clean_kwargs(raw: Any) -> dict[str, Any]:
    """Drop None padding (HF rows carry every kwarg name) and turn integral floats into ints."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"kwargs entries must be objects, got {type(raw).__name__}")
    cleaned: dict[str, Any] = {}
    for name, value in raw.items():
        if value is None:
            continue
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        cleaned[str(name)] = value
    return cleaned


def prompt_from_row(row: Any) -> Prompt:
    """Validate one IFEval-schema row and build a :class:`Prompt`; ValueError if malformed."""
    if not isinstance(row, Mapping):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    for name in ("prompt", "instruction_id_list"):
        if name not in row:
            raise ValueError(f"missing field {name!r}")
    key = row.get("key")
    if key is not None and (isinstance(key, bool) or not isinstance(key, int | str)):
        raise ValueError(f"field 'key' must be an integer or a string, got {key!r}")
    text = row["prompt"]
    if not isinstance(text, str):
        raise ValueError("field 'prompt' must be a string")
    ids = row["instruction_id_list"]
    if not isinstance(ids, list | tuple) or not all(isinstance(i, str) for i in ids):
        raise ValueError("field 'instruction_id_list' must be a list of strings")
    raw_kwargs = row.get("kwargs")
    if raw_kwargs is None:
        raw_kwargs = [{} for _ in ids]
    if not isinstance(raw_kwargs, list | tuple):
        raise ValueError("field 'kwargs' must be a list")
    if len(raw_kwargs) != len(ids):
        raise ValueError(f"'kwargs' has {len(raw_kwargs)} entries but 'instruction_id_list' has {len(ids)}")
    kwargs = tuple(_clean_kwargs(kw) for kw in raw_kwargs)
    for iid, kw in zip(ids, kwargs):
        if iid not in REGISTRY:
            raise ValueError(f"unknown instruction id {iid!r}")
        build_check(iid, kw, _VALIDATION_SETTINGS)
    return Prompt(key=key, prompt=text, instruction_id_list=tuple(ids), kwargs=kwargs)


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) for each non-blank line; DataError on invalid JSON or encoding."""
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(
                        f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno})"
                    ) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def load_prompts(path: str | Path) -> list[Prompt]:
    """Read IFEval prompts from a JSONL file (fields key, prompt, instruction_id_list, kwargs).

    Raises DataError (a ValueError) naming the file and line for malformed rows, duplicate keys
    and unknown instructions; OSError if the file cannot be read.
    """
    path = Path(path)
    prompts: list[Prompt] = []
    seen: dict[str, int] = {}
    for number, row in _jsonl_rows(path):
        try:
            prompt = prompt_from_row(row)
        except ValueError as exc:
            raise DataError(f"{path}:{number}: {exc}") from None
        if prompt.key is not None:
            if str(prompt.key) in seen:
                raise DataError(
                    f"{path}:{number}: duplicate key {prompt.key!r} (first on line {seen[str(prompt.key)]})"
                )
            seen[str(prompt.key)] = number
        prompts.append(prompt)
    if not prompts:
        raise DataError(f"{path}: no prompts")
    return prompts


def load_responses(path: str | Path) -> dict[Key, str]:
    """Read responses from JSONL rows ``{"prompt": ..., "response": ...}`` or ``{"key": ..., "response": ...}``.

    Rows with a ``key`` are indexed by key, the others by their exact prompt text; the result is
    what :func:`eval.ifeval.score` takes. DataError names the file and line of a bad row.
    """
    path = Path(path)
    responses: dict[Key, str] = {}
    seen: dict[Key, int] = {}
    for number, row in _jsonl_rows(path):
        where = f"{path}:{number}"
        if not isinstance(row, Mapping):
            raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
        if "response" not in row:
            raise DataError(f"{where}: missing field 'response'")
        response = row["response"]
        if not isinstance(response, str):
            raise DataError(f"{where}: field 'response' must be a string, got {type(response).__name__}")
        key = row.get("key")
        if key is not None:
            if isinstance(key, bool) or not isinstance(key, int | str):
                raise DataError(f"{where}: field 'key' must be an integer or a string, got {key!r}")
            index: Key = str(key)
            label = f"key {key!r}"
        elif isinstance(row.get("prompt"), str):
            index = row["prompt"]
            label = "prompt text"
        else:
            raise DataError(
                f"{where}: needs a 'key' or a string 'prompt' to match the response to its prompt"
            )
        if index in seen:
            raise DataError(f"{where}: duplicate {label} (first on line {seen[index]})")
        seen[index] = number
        responses[index] = response
    return responses


def load_hub_prompts(
    name: str = "google/IFEval", *, config: str | None = None, split: str = "train"
) -> list[Prompt]:
    """Load IFEval-schema rows from the Hugging Face hub, e.g. ``("LumiOpen/ifeval_mt", config="fi")``.

    Imports ``datasets`` lazily (it is only needed here) and needs hub access or a warm cache.
    """
    from datasets import load_dataset  # lazy: the scorer itself never needs datasets

    rows = load_dataset(name, config, split=split)
    prompts = []
    for index, row in enumerate(rows):
        try:
            prompts.append(prompt_from_row(dict(row)))
        except ValueError as exc:
            raise DataError(f"{name}[{config or 'default'}/{split}] row {index}: {exc}") from None
    return prompts
