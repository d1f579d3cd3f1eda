"""sisu's IFEval scorer: the 25 verifiable-instruction checkers, strict and loose scoring.

English verdicts follow the reference implementation (google-research
``instruction_following_eval``, also in lm-eval); other benchmark languages (Finnish) get
language-aware case checks unless ``compat="lumiopen"``. Pure Python; needs only langdetect.

    from eval.ifeval import load_prompts, load_responses, score, write_outputs
    scores = score(load_prompts("input_data.jsonl"), load_responses("responses.jsonl"))
    write_outputs(scores, "out/")

See eval/ifeval/README.md for the behaviour in detail and the differences from the reference.
"""

from .checkers import INSTRUCTION_IDS
from .loading import DataError, Prompt, load_hub_prompts, load_prompts, load_responses, prompt_from_row
from .scoring import (
    Accuracy,
    MissingResponsesError,
    Scores,
    Verdict,
    check_responses,
    format_table,
    score,
    write_outputs,
)

__all__ = [
    "INSTRUCTION_IDS",
    "Accuracy",
    "DataError",
    "MissingResponsesError",
    "Prompt",
    "Scores",
    "Verdict",
    "check_responses",
    "format_table",
    "load_hub_prompts",
    "load_prompts",
    "load_responses",
    "prompt_from_row",
    "score",
    "write_outputs",
]
