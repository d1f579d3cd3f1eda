"""Time the IFEval scorer on 541 responses: in-process and through the CLI.

    .venv/bin/python bench/ifeval_speed.py

Responses are real assistant messages from ../shared/samples/oasst2_sample.jsonl, one per prompt;
for the case instructions they are upper- or lower-cased so that language detection runs too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))


def _responses(prompts: list[dict]) -> list[dict]:
    rows = [
        json.loads(line) for line in (SHARED / "samples" / "oasst2_sample.jsonl").read_text().splitlines()
    ]
    texts = [r["text"] for r in rows if r["role"] == "assistant"]
    out = []
    for i, p in enumerate(prompts):
        text = texts[i % len(texts)]
        if "change_case:english_capital" in p["instruction_id_list"]:
            text = text.upper()
        elif "change_case:english_lowercase" in p["instruction_id_list"]:
            text = text.lower()
        out.append({"key": p["key"], "response": text})
    return out


def main() -> None:
    prompts_path = SHARED / "ifeval" / "input_data.jsonl"
    prompts = [json.loads(line) for line in prompts_path.read_text().splitlines()]
    with tempfile.TemporaryDirectory() as tmp:
        responses_path = Path(tmp) / "responses.jsonl"
        responses_path.write_text("".join(json.dumps(r) + "\n" for r in _responses(prompts)))
        chars = sum(len(r["response"]) for r in _responses(prompts))

        start = time.perf_counter()
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "eval.ifeval",
                "--prompts",
                str(prompts_path),
                "--responses",
                str(responses_path),
                "--out",
                str(Path(tmp) / "out"),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        cli_seconds = time.perf_counter() - start

        from eval.ifeval import load_prompts, load_responses, score, write_outputs

        timings = []
        for run in range(2):  # the first run also loads langdetect's language profiles
            start = time.perf_counter()
            scores = score(load_prompts(prompts_path), load_responses(responses_path))
            write_outputs(scores, Path(tmp) / f"out{run}")
            timings.append(time.perf_counter() - start)

    print(f"{len(prompts)} responses, {chars} characters")
    print(f"CLI (python -m eval.ifeval, interpreter start included): {cli_seconds:.2f} s")
    print(f"in-process load + score + write: first {timings[0]:.2f} s, again {timings[1]:.2f} s")
    print(cli.stdout.splitlines()[0])


if __name__ == "__main__":
    main()
