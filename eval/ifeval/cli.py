"""Command line: score IFEval responses and write verdicts.jsonl and scores.json."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from data.errors import SisuError

from .loading import load_prompts, load_responses
from .scoring import (
    COMPAT_MODES,
    SENTENCE_SPLITTERS,
    MissingResponsesError,
    format_table,
    score,
    write_outputs,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval.ifeval",
        description="Score model responses on IFEval (strict and loose, prompt and instruction level).",
    )
    parser.add_argument(
        "--prompts", required=True, help="IFEval-schema JSONL (key, prompt, instruction_id_list, kwargs)"
    )
    parser.add_argument(
        "--responses",
        required=True,
        help='JSONL rows {"prompt": ..., "response": ...} or {"key": ..., "response": ...}',
    )
    parser.add_argument("--out", required=True, help="output folder for verdicts.jsonl and scores.json")
    parser.add_argument("--language", default="en", help="benchmark language, e.g. en (default) or fi")
    parser.add_argument(
        "--exclude-other-languages",
        action="store_true",
        help="drop prompts that ask for a response language other than --language",
    )
    parser.add_argument(
        "--allow-missing", action="store_true", help="score only the prompts that have a response"
    )
    parser.add_argument(
        "--compat", choices=COMPAT_MODES, default=None, help="reproduce another harness's verdicts"
    )
    parser.add_argument("--sentence-splitter", choices=SENTENCE_SPLITTERS, default="builtin")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input or options)."""
    args = build_parser().parse_args(argv)
    try:
        prompts = load_prompts(args.prompts)
        responses = load_responses(args.responses)
        scores = score(
            prompts,
            responses,
            language=args.language,
            exclude_other_languages=args.exclude_other_languages,
            allow_missing=args.allow_missing,
            compat=args.compat,
            sentence_splitter=args.sentence_splitter,
        )
        write_outputs(scores, args.out)
    except MissingResponsesError as exc:
        print(f"error: {args.responses}: {exc}", file=sys.stderr)
        return 2
    except SisuError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(format_table(scores))
    return 0
