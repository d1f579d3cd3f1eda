"""Shared parts of bench/sft_throughput.py and bench/dpo_throughput.py.

- synthetic data: deterministic English chats (SFT, `messages` rows) and preference pairs (TRL's conversational
  `prompt` / `chosen` / `rejected` rows, which sisu's `preference` format reads as they are) whose token lengths
  are long-tailed: lognormal with median 250 and 90th percentile 800 tokens before truncation to max_seq_len;
- environment: machine, git commit, package versions of both interpreters;
- running: one child process per run, with its wall time and its peak RSS measured from outside (wait4);
- per-step metrics of either system -> one run summary (steps after the warm-up) -> medians and ratios;
- the result: one JSON line on stdout, appended to bench/results.jsonl.

sisu and TRL never share a process: sisu runs with the main interpreter (.venv/bin/python), TRL with
bench/.venv-trl/bin/python on bench/trl_runner.py (made by bench/setup_trl.sh).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
DEFAULT_MODEL = REPO / ".cache" / "models" / "smollm2-135m-instruct"
SISU_PYTHON = REPO / ".venv" / "bin" / "python"
TRL_PYTHON = BENCH / ".venv-trl" / "bin" / "python"
TRL_RUNNER = BENCH / "trl_runner.py"
RESULTS = BENCH / "results.jsonl"

# The length distribution of issue 9: median 250 and p90 800 tokens (chat template included), then cut to 512.
MEDIAN_TOKENS = 250
P90_TOKENS = 800
Z90 = 1.2815515655446004  # standard normal quantile of 0.9

# --------------------------------------------------------------------------------------------------------------
# Synthetic text
# --------------------------------------------------------------------------------------------------------------

NOUNS = (
    "model data report team system answer question result method value table file server plan budget "
    "customer project meeting garden recipe kitchen window river city village market school teacher student "
    "book letter story song picture camera engine battery network signal language sentence word example "
    "problem solution idea reason detail change test error version update feature user account password "
    "schedule deadline invoice price order product review summary chapter section paragraph list step"
).split()
VERBS = (  # base, third person, past
    "make makes made|take takes took|find finds found|give gives gave|keep keeps kept|show shows showed|"
    "build builds built|write writes wrote|read reads read|check checks checked|explain explains explained|"
    "change changes changed|improve improves improved|compare compares compared|describe describes described|"
    "move moves moved|open opens opened|close closes closed|send sends sent|save saves saved|"
    "follow follows followed|measure measures measured|prepare prepares prepared|review reviews reviewed|"
    "test tests tested|update updates updated|plan plans planned|share shares shared|use uses used|"
    "start starts started|finish finishes finished|support supports supported|reduce reduces reduced"
).split("|")
ADJECTIVES = (
    "simple clear small large new old quick slow careful useful important common different similar "
    "possible recent final main short long early late safe quiet bright fresh warm cold strong gentle "
    "practical detailed general specific local public private basic modern popular"
).split()
ADVERBS = "quickly carefully often usually clearly easily slowly directly simply again later together".split()
PREPOSITIONS = "in on with for from about after before during under over near through".split()
DETERMINERS = "the the the a this that every each our your".split()
SUBJECTS = ["I", "we", "you", "they", "people", "most teams", "the team", "a good plan", "the new version"]
OPENERS = [
    "",
    "",
    "",
    "However, ",
    "In practice, ",
    "For example, ",
    "Then ",
    "Usually ",
    "Also, ",
    "First, ",
]
QUESTION_STARTS = ["Can you", "Could you", "How do I", "Why does the team", "Should we", "When do you"]


def _noun_phrase(rng: random.Random) -> str:
    det = rng.choice(DETERMINERS)
    if det == "a" or rng.random() < 0.4:
        noun = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    else:
        noun = rng.choice(NOUNS)
    if det == "a" and noun[0] in "aeiou":
        det = "an"
    return f"{det} {noun}"


def _sentence(rng: random.Random, *, question: bool = False) -> str:
    """One sentence of roughly 6 to 20 words from the fixed vocabulary."""
    base, third, past = rng.choice(VERBS).split()
    if question:
        text = f"{rng.choice(QUESTION_STARTS)} {base} {_noun_phrase(rng)} {rng.choice(PREPOSITIONS)} {_noun_phrase(rng)}"
        if rng.random() < 0.4:
            text += f" {rng.choice(ADVERBS)}"
        return text + "?"
    pattern = rng.randrange(5)
    if pattern == 0:
        text = (
            f"{_noun_phrase(rng)} {third} {_noun_phrase(rng)} {rng.choice(PREPOSITIONS)} {_noun_phrase(rng)}"
        )
    elif pattern == 1:
        subject = rng.choice(SUBJECTS)
        text = (
            f"{subject} {past} {_noun_phrase(rng)} because {_noun_phrase(rng)} {third} {rng.choice(ADVERBS)}"
        )
    elif pattern == 2:
        other = rng.choice(VERBS).split()[0]
        text = f"if you {base} {_noun_phrase(rng)}, {_noun_phrase(rng)} will {other} {rng.choice(ADVERBS)}"
    elif pattern == 3:
        text = (
            f"{rng.choice(SUBJECTS)} should {base} {_noun_phrase(rng)} {rng.choice(PREPOSITIONS)} "
            f"{_noun_phrase(rng)} and {rng.choice(VERBS).split()[0]} {_noun_phrase(rng)}"
        )
    else:
        text = f"{_noun_phrase(rng)} is {rng.choice(ADJECTIVES)}, so {rng.choice(SUBJECTS)} {past} {_noun_phrase(rng)}"
    text = rng.choice(OPENERS) + text
    return text[0].upper() + text[1:] + "."


def _fit(sentence: str, room: int) -> str:
    """The sentence, cut to `room` words (at least 3) and closed again when cut."""
    words = sentence.split()
    if len(words) <= room:
        return sentence
    end = "?" if sentence.endswith("?") else "."
    return " ".join(words[: max(3, room)]).rstrip(",;") + end


def synthetic_text(rng: random.Random, num_words: int, *, question: bool = False) -> str:
    """English-looking text of `num_words` words (at least 3): paragraphs of sentences, sometimes a numbered
    list; a question first when `question`."""
    num_words = max(3, num_words)
    paragraphs: list[str] = []
    words = 0
    if question:
        first = _fit(_sentence(rng, question=True), num_words)
        paragraphs.append(first)
        words += len(first.split())
    while words < num_words:
        if words > 60 and rng.random() < 0.15:  # a numbered list
            items = []
            for i in range(rng.randint(3, 6)):
                item = f"{i + 1}. " + _fit(_sentence(rng), num_words - words - 1)
                items.append(item)
                words += len(item.split())
                if words >= num_words:
                    break
            paragraphs.append("\n".join(items))
            continue
        sentences = []
        for _ in range(rng.randint(2, 5)):
            sentence = _fit(_sentence(rng), num_words - words)
            sentences.append(sentence)
            words += len(sentence.split())
            if words >= num_words:
                break
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


# --------------------------------------------------------------------------------------------------------------
# Synthetic data sets
# --------------------------------------------------------------------------------------------------------------

# Calibrated with SmolLM2's tokenizer (bench prints the measured lengths): tokens per word of synthetic_text,
# and the chat template's tokens per message (<|im_start|>role\n ... <|im_end|>\n) and default system prompt.
TOKENS_PER_WORD = 1.23
TOKENS_PER_MESSAGE = 5
DEFAULT_SYSTEM_TOKENS = 20
SYSTEM_PROMPTS = [
    "You are a helpful assistant. Answer clearly and keep the answer practical.",
    "You are a careful assistant who explains each step and gives short examples.",
    "You help people plan projects. Be specific and mention the important details.",
]


def lognormal_sigma(median: float = MEDIAN_TOKENS, p90: float = P90_TOKENS) -> float:
    return math.log(p90 / median) / Z90


def draw_total_tokens(rng: random.Random, median: float = MEDIAN_TOKENS, p90: float = P90_TOKENS) -> int:
    """A sequence length from the lognormal with the given median and 90th percentile (at least 24 tokens)."""
    return max(24, round(rng.lognormvariate(math.log(median), lognormal_sigma(median, p90))))


def _words(tokens: float) -> int:
    return max(3, round(tokens / TOKENS_PER_WORD))


def _record_rng(seed: int, index: int, salt: int) -> random.Random:
    # one generator per record: record i is the same whatever the number of records asked for
    return random.Random(seed * 1_000_003 + index * 7919 + salt)


def make_sft_records(num: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """`messages` rows: an optional system turn, then 1-3 user/assistant exchanges; the total token length
    (chat template included) follows the long-tailed lognormal."""
    return list(iter_sft_records(num, seed=seed))


def iter_sft_records(num: int, *, seed: int = 0) -> Iterator[dict[str, Any]]:
    """The rows of `make_sft_records`, one at a time (for files of any size)."""
    for index in range(num):
        rng = _record_rng(seed, index, 1)
        total = draw_total_tokens(rng)
        turns = rng.choices((1, 2, 3), weights=(6, 3, 1))[0]
        messages: list[dict[str, str]] = []
        overhead = 2 * turns * TOKENS_PER_MESSAGE
        if rng.random() < 0.3:
            system = rng.choice(SYSTEM_PROMPTS)
            messages.append({"role": "system", "content": system})
            overhead += TOKENS_PER_MESSAGE + round(len(system.split()) * TOKENS_PER_WORD)
        else:
            overhead += DEFAULT_SYSTEM_TOKENS
        content = max(20.0, total - overhead)
        user_share = rng.uniform(0.1, 0.35)
        weights = [rng.uniform(0.5, 1.5) for _ in range(turns)]
        for weight in weights:
            turn_tokens = content * weight / sum(weights)
            messages.append(
                {
                    "role": "user",
                    "content": synthetic_text(rng, _words(turn_tokens * user_share), question=True),
                }
            )
            messages.append(
                {"role": "assistant", "content": synthetic_text(rng, _words(turn_tokens * (1 - user_share)))}
            )
        yield {"id": f"sft-{seed}-{index}", "messages": messages}


def make_preference_records(num: int, *, seed: int = 0, max_prompt_tokens: int = 256) -> list[dict[str, Any]]:
    """Preference rows in TRL's conversational format: `prompt` (messages ending with a user turn), `chosen` and
    `rejected` (one assistant message each). The pair length, prompt + the longer completion, follows the
    long-tailed lognormal; prompts stay under `max_prompt_tokens` (sisu's data.max_prompt_length), so no prompt is
    ever cut and sisu and TRL (which truncates prompt + completion to max_length from the right, without a
    prompt limit) see the same tokens."""
    records = []
    prompt_cap = max(32, max_prompt_tokens - 32)  # margin for the calibration's error
    for index in range(num):
        rng = _record_rng(seed, index, 2)
        total = draw_total_tokens(rng)
        prompt_tokens = min(prompt_cap, max(24, round(total * rng.uniform(0.15, 0.45))))
        prompt: list[dict[str, str]] = []
        overhead = 2 * TOKENS_PER_MESSAGE  # the user turn and the generation prompt
        if rng.random() < 0.3:
            system = rng.choice(SYSTEM_PROMPTS)
            prompt.append({"role": "system", "content": system})
            overhead += TOKENS_PER_MESSAGE + round(len(system.split()) * TOKENS_PER_WORD)
        else:
            overhead += DEFAULT_SYSTEM_TOKENS
        if prompt_tokens - overhead > 120 and rng.random() < 0.3:  # an earlier exchange
            earlier = (prompt_tokens - overhead) * 0.5
            prompt.append(
                {"role": "user", "content": synthetic_text(rng, _words(earlier * 0.3), question=True)}
            )
            prompt.append({"role": "assistant", "content": synthetic_text(rng, _words(earlier * 0.7))})
            overhead += 2 * TOKENS_PER_MESSAGE + earlier
        prompt.append(
            {"role": "user", "content": synthetic_text(rng, _words(prompt_tokens - overhead), question=True)}
        )
        longer = max(8, total - prompt_tokens - 2)
        shorter = longer * rng.uniform(0.5, 1.0)
        long_text = synthetic_text(rng, _words(longer))
        short_text = synthetic_text(rng, _words(shorter))
        if long_text == short_text:
            short_text += " " + synthetic_text(rng, 6)
        chosen, rejected = (long_text, short_text) if rng.random() < 0.5 else (short_text, long_text)
        records.append(
            {
                "id": f"pref-{seed}-{index}",
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
            }
        )
    return records


def write_jsonl(records: Iterable[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


# --------------------------------------------------------------------------------------------------------------
# Token lengths
# --------------------------------------------------------------------------------------------------------------


def load_tokenizer(model: str | os.PathLike) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model))


def _chat_ids(tokenizer: Any, messages: Sequence[dict], *, add_generation_prompt: bool = False) -> list[int]:
    text = tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def sft_token_lengths(records: Sequence[dict], tokenizer: Any) -> list[int]:
    """Tokens of each chat rendered with the tokenizer's chat template (before truncation)."""
    return [len(_chat_ids(tokenizer, r["messages"])) for r in records]


def preference_token_lengths(records: Sequence[dict], tokenizer: Any) -> tuple[list[int], list[int]]:
    """(pair lengths = prompt + the longer completion, prompt lengths), before truncation."""
    pairs, prompts = [], []
    for r in records:
        prompt = len(_chat_ids(tokenizer, r["prompt"], add_generation_prompt=True))
        chosen = len(_chat_ids(tokenizer, r["prompt"] + r["chosen"]))
        rejected = len(_chat_ids(tokenizer, r["prompt"] + r["rejected"]))
        pairs.append(max(chosen, rejected))
        prompts.append(prompt)
    return pairs, prompts


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile, q in [0, 100]."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def length_summary(lengths: Sequence[int], *, max_len: int) -> dict[str, Any]:
    cut = [min(n, max_len) for n in lengths]
    return {
        "n": len(lengths),
        "median": round(percentile(lengths, 50), 1),
        "p90": round(percentile(lengths, 90), 1),
        "max": max(lengths),
        "share_over_max_len": round(sum(n > max_len for n in lengths) / len(lengths), 3),
        "mean_after_truncation": round(sum(cut) / len(cut), 1),
        "median_after_truncation": round(percentile(cut, 50), 1),
        "p90_after_truncation": round(percentile(cut, 90), 1),
    }


def padding_share(lengths: Sequence[int], *, micro_batch: int, max_len: int) -> float:
    """Share of padding in right-padded micro-batches of consecutive examples (what an unsorted loader pays)."""
    cut = [min(n, max_len) for n in lengths]
    real = padded = 0
    for start in range(0, len(cut) - micro_batch + 1, micro_batch):
        batch = cut[start : start + micro_batch]
        real += sum(batch)
        padded += max(batch) * len(batch)
    return round(1 - real / padded, 3) if padded else 0.0


# --------------------------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"nproc": os.cpu_count(), "cpu_model": cpu, "platform": platform.platform()}
    try:
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["mem_total_gb"] = round(int(line.split()[1]) * 1024 / 1e9, 1)
    except (OSError, ValueError):
        pass
    return info


def git_info() -> dict[str, Any]:
    """Read-only: the commit and whether the work tree differs from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        return {
            "commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        }
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def python_versions(python: Path, modules: Sequence[str]) -> dict[str, str | None]:
    """Versions of `modules` as seen by another interpreter (importlib.metadata, nothing imported)."""
    code = (
        "import json, platform, sys\n"
        "from importlib import metadata\n"
        "out = {'python': platform.python_version()}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        out[name] = metadata.version(name)\n"
        "    except metadata.PackageNotFoundError:\n"
        "        out[name] = None\n"
        "print(json.dumps(out))\n"
    )
    try:
        done = subprocess.run(
            [str(python), "-c", code, *modules], capture_output=True, text=True, check=True, timeout=60
        )
        return json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return {"python": None}


def child_env() -> dict[str, str]:
    """The same environment for both systems: offline, no tokenizer threads, unbuffered output."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    env.pop("PYTHONPATH", None)
    return env


# --------------------------------------------------------------------------------------------------------------
# Running one system
# --------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ChildResult:
    returncode: int
    wall_seconds: float
    max_rss_bytes: int  # the child's peak resident set size over its whole life (wait4's ru_maxrss)
    log: Path


def run_child(cmd: Sequence[str], *, log: Path, timeout: float, cwd: Path = REPO) -> ChildResult:
    """Run `cmd` with its output in `log`; reap it with wait4 so that its own peak RSS is known."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as out:
        out.write("$ " + shlex.join(cmd) + "\n")
        out.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, env=child_env(), stdout=out, stderr=subprocess.STDOUT)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                out.write(f"\n[bench] killed after {timeout:.0f} s\n")
                break
            time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
    return ChildResult(
        returncode=proc.returncode,
        wall_seconds=time.perf_counter() - start,
        max_rss_bytes=usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024),
        log=log,
    )


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def sisu_steps(metrics_path: Path) -> list[dict[str, Any]]:
    """sisu's metrics.jsonl -> the bench's per-step shape (see trl_runner.py for the TRL side)."""
    steps = []
    for row in read_jsonl(metrics_path):
        seconds = row["step_seconds"]
        step = {
            "step": row["step"],
            "loss": row["loss"],
            "step_seconds": seconds,
            "real_tokens": round(row["tokens_per_second"] * seconds),
            "peak_rss_bytes": round(row["peak_memory_gb"] * 1e9),
        }
        if "num_pairs" in row:
            step["num_pairs"] = row["num_pairs"]
        steps.append(step)
    return steps


def summarize_run(
    steps: Sequence[dict[str, Any]], *, warmup: int, child: ChildResult, expected_steps: int
) -> dict[str, Any]:
    """One run: throughput over the steps after `warmup` (sum of tokens / sum of seconds), losses, memory."""
    if child.returncode != 0 or len(steps) < expected_steps:
        raise RuntimeError(
            f"run failed (exit {child.returncode}, {len(steps)}/{expected_steps} steps); log {child.log}:\n"
            + tail(child.log)
        )
    measured = steps[warmup:] or steps[-1:]
    seconds = sum(s["step_seconds"] for s in measured)
    out: dict[str, Any] = {
        "tokens_per_second": round(sum(s["real_tokens"] for s in measured) / seconds, 1),
        "step_seconds_mean": round(seconds / len(measured), 3),
        "step_seconds": [round(s["step_seconds"], 2) for s in steps],
        "measured_steps": len(measured),
        "real_tokens_measured": sum(s["real_tokens"] for s in measured),
        "first_loss": round(steps[0]["loss"], 5),
        "final_loss": round(steps[-1]["loss"], 5),
        # ru_maxrss of the training process at the end of its last step (the same definition on both sides;
        # excludes what a system does after training, such as sisu's final checkpoint)
        "peak_rss_gb": round(steps[-1]["peak_rss_bytes"] / 1e9, 3),
        # the child's peak over its whole life, measured from outside (wait4)
        "process_peak_rss_gb": round(child.max_rss_bytes / 1e9, 3),
        "wall_seconds": round(child.wall_seconds, 1),
    }
    if all("num_pairs" in s for s in measured):
        out["pairs_per_second"] = round(sum(s["num_pairs"] for s in measured) / seconds, 4)
    return out


def median_of(runs: Sequence[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(values), 4) if values else None


def aggregate(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the repeats of one system, plus the runs themselves."""
    keys = (
        "tokens_per_second",
        "pairs_per_second",
        "step_seconds_mean",
        "peak_rss_gb",
        "process_peak_rss_gb",
        "first_loss",
        "final_loss",
        "wall_seconds",
    )
    out = {key: median_of(runs, key) for key in keys if any(key in r for r in runs)}
    out["runs"] = list(runs)
    return out


def compare_tokens(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Real tokens of the measured steps in the first run of each system, and their relative difference
    (0 when both tokenize the same examples the same way and train them in the same order)."""
    (name_a, a), (name_b, b) = runs.items()
    x, y = a["runs"][0]["real_tokens_measured"], b["runs"][0]["real_tokens_measured"]
    return {name_a: x, name_b: y, "relative_difference": round((x - y) / y, 4) if y else None}


def paired_ratios(a: dict[str, Any], b: dict[str, Any], key: str) -> dict[str, Any]:
    """Ratios a/b of the runs of the same repeat (run back to back, so they share most of the machine's drift),
    and their median: a check on the ratio of medians when the machine's speed changed between repeats."""
    values = [
        round(x[key] / y[key], 3)
        for x, y in zip(a["runs"], b["runs"])
        if x.get(key) is not None and y.get(key)
    ]
    return {"per_repeat": values, "median": round(statistics.median(values), 3) if values else None}


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def alternate(
    systems: Sequence[str], repeats: int, run_one: Callable[[str, int], dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """A B A B ...: every repeat runs each system once, in the given order (the machine's speed drifts)."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
    for repeat in range(1, repeats + 1):
        for name in systems:
            print(f"[bench] repeat {repeat}/{repeats}: {name} ...", file=sys.stderr, flush=True)
            load_before = _load_average()
            result = run_one(name, repeat)
            # other work on the machine skews a run: its 1-minute load average before and after
            result["load_average_1m"] = [load_before, _load_average()]
            print(
                f"[bench]   {name}: {result['tokens_per_second']} real tokens/s"
                + (f", {result['pairs_per_second']} pairs/s" if "pairs_per_second" in result else "")
                + f", step {result['step_seconds_mean']} s, peak RSS {result['peak_rss_gb']} GB"
                f" (process {result['process_peak_rss_gb']} GB), loss {result['first_loss']} -> "
                f"{result['final_loss']}, wall {result['wall_seconds']} s",
                file=sys.stderr,
                flush=True,
            )
            runs[name].append(result)
    return runs


# --------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------


def add_common_args(
    parser: argparse.ArgumentParser, *, steps: int, global_batch: int, micro_batch: int
) -> None:
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="HF model directory (both systems)")
    parser.add_argument("--steps", type=int, default=steps, help="optimizer steps per run")
    parser.add_argument(
        "--warmup-steps", type=int, default=1, help="first steps left out of the throughput (warm-up)"
    )
    parser.add_argument("--repeats", type=int, default=2, help="A B rounds; medians are over these")
    parser.add_argument(
        "--global-batch", type=int, default=global_batch, help="samples (pairs) per optimizer step"
    )
    parser.add_argument("--micro-batch", type=int, default=micro_batch, help="samples (pairs) per forward")
    parser.add_argument("--max-seq-len", type=int, default=512)
    parser.add_argument("--lr", type=float, default=None, help="learning rate (constant, no warmup)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and of both trainers")
    parser.add_argument(
        "--sisu-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra sisu config override, e.g. data.group_by_length=true (repeatable; applied last)",
    )
    parser.add_argument(
        "--trl-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra TRL config field, e.g. optim=adamw_torch (repeatable; value parsed as JSON, else string)",
    )
    parser.add_argument("--skip-trl", action="store_true", help="run sisu only (no TRL environment needed)")
    parser.add_argument("--sisu-python", default=str(SISU_PYTHON))
    parser.add_argument("--trl-python", default=str(TRL_PYTHON))
    parser.add_argument(
        "--workdir", default=None, help="keep data, logs and outputs here (default: a temp dir)"
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per run")
    parser.add_argument("--results", default=str(RESULTS), help="JSONL file the result line is appended to")
    parser.add_argument("--no-append", action="store_true", help="print the result line only")


def check_args(args: argparse.Namespace) -> None:
    if args.global_batch % args.micro_batch:
        raise SystemExit(
            f"--global-batch {args.global_batch} is not a multiple of --micro-batch {args.micro_batch}"
        )
    if args.steps <= args.warmup_steps:
        raise SystemExit(f"--steps {args.steps} must exceed --warmup-steps {args.warmup_steps}")
    if not args.skip_trl and not Path(args.trl_python).is_file():
        raise SystemExit(
            f"{args.trl_python} not found: run `bash bench/setup_trl.sh` first, or pass --skip-trl"
        )
    if not Path(args.model).is_dir():
        raise SystemExit(f"model directory {args.model} not found (python launch/convert_gguf.py makes it)")


def command_line() -> str:
    """How this bench was started, as a command to paste (relative to the repository root when possible)."""
    script = Path(sys.argv[0]).resolve()
    try:
        script_text = str(script.relative_to(REPO))
    except ValueError:
        script_text = str(script)
    return shlex.join([".venv/bin/python", script_text, *sys.argv[1:]])


def header(args: argparse.Namespace, bench: str) -> dict[str, Any]:
    versions = {"sisu": python_versions(Path(args.sisu_python), ("torch", "transformers", "datasets"))}
    if not args.skip_trl:
        versions["trl"] = python_versions(
            Path(args.trl_python), ("torch", "transformers", "datasets", "accelerate", "trl")
        )
    return {
        "bench": bench,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "git": git_info(),
        "machine": machine_info(),
        "versions": versions,
    }


def finish(result: dict[str, Any], args: argparse.Namespace) -> None:
    line = json.dumps(result)
    print(line, flush=True)
    if not args.no_append:
        path = Path(args.results)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        print(f"[bench] appended to {path}", file=sys.stderr)
