"""Fixtures for the IFEval scorer tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from eval.ifeval import prompt_from_row, score

Judge = Callable[..., tuple[bool, bool]]


@pytest.fixture
def judge() -> Judge:
    """judge(instruction_id, response, benchmark="en", compat=None, **kwargs) -> (strict, loose)."""

    def run(
        instruction_id: str, response: str, *, benchmark: str = "en", compat: str | None = None, **kwargs
    ):
        prompt = prompt_from_row(
            {"key": 1, "prompt": "p", "instruction_id_list": [instruction_id], "kwargs": [kwargs]}
        )
        verdict = score([prompt], {1: response}, language=benchmark, compat=compat).verdicts[0]
        return verdict.follow_instruction_list_strict[0], verdict.follow_instruction_list_loose[0]

    return run
