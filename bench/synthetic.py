"""The benchmarks' synthetic data: deterministic English chats (SFT, `messages` rows) and preference pairs (TRL's
conversational `prompt` / `chosen` / `rejected` rows, which sisu's `preference` format reads as they are) whose token
lengths are long-tailed: lognormal with median 250 and 90th percentile 800 tokens before truncation to max_seq_len;
and their token-length statistics.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

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


def _maybe_system_prompt(rng: random.Random, messages: list[dict[str, str]]) -> float:
    """A system prompt in 30% of conversations (appended to `messages`); the tokens it, or the template's default
    system prompt, adds."""
    if rng.random() < 0.3:
        system = rng.choice(SYSTEM_PROMPTS)
        messages.append({"role": "system", "content": system})
        return TOKENS_PER_MESSAGE + round(len(system.split()) * TOKENS_PER_WORD)
    return DEFAULT_SYSTEM_TOKENS


def iter_sft_records(num: int, *, seed: int = 0) -> Iterator[dict[str, Any]]:
    """The rows of `make_sft_records`, one at a time (for files of any size)."""
    for index in range(num):
        rng = _record_rng(seed, index, 1)
        total = draw_total_tokens(rng)
        turns = rng.choices((1, 2, 3), weights=(6, 3, 1))[0]
        messages: list[dict[str, str]] = []
        overhead = 2 * turns * TOKENS_PER_MESSAGE
        overhead += _maybe_system_prompt(rng, messages)
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
        overhead += _maybe_system_prompt(rng, prompt)
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
