"""One chunk of records -> translated, cleaned rows; and the translator that runs a causal LM on segments."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from data.translate.clean import Cleaner, TranslatedField
from data.translate.items import Item, output_row, record_fields
from data.translate.prompt import FewShotPrompt
from data.translate.segment import split_text
from eval.generate import encode_prefix, generate_batch, stops_for
from runtime.distributed import reduce_values

# segments -> translations; a translator may also expose `budget_cut`, the segments of its last call whose
# translation ran into the token budget (ModelTranslator does)
Translate = Callable[[Sequence[str]], Sequence[str]]


def translate_chunk(
    items: Sequence[Item],
    *,
    translate: Translate,
    roles: Sequence[str],
    max_chars: int,
    cleaner: Cleaner,
    target_lang: str,
) -> list[dict]:
    """Translate `items` with one call of `translate` (on their unique segments) and clean them.

    Returns one progress row per item: key, source_id, status (accepted | rejected), reasons, problems,
    segments (count) and record (the output row).
    """
    plans = []
    index: dict[str, int] = {}
    for item in items:
        fields = [f for f in record_fields(item.record, roles=roles) if f.translate]
        templates = [(field, split_text(field.text, max_chars=max_chars)) for field in fields]
        for _, template in templates:
            for segment in template.segments:
                index.setdefault(segment, len(index))
        plans.append((item, templates))
    unique = list(index)
    outputs = list(translate(unique))  # also with nothing to do: sharded models translate in lockstep
    if len(outputs) != len(unique):
        raise RuntimeError(f"translator returned {len(outputs)} texts for {len(unique)} segments")
    cut = set(getattr(translate, "budget_cut", ()))  # segments whose translation ran into the budget
    rows = []
    for item, templates in plans:
        texts: dict[str, str] = {}
        checked = []
        for field, template in templates:
            translations = [outputs[index[s]] for s in template.segments]
            texts[field.name] = template.fill(translations)
            pairs = tuple(zip(template.segments, translations))
            field_cut = tuple(s for s in template.segments if s in cut)
            checked.append(TranslatedField(field.name, field.text, texts[field.name], pairs, field_cut))
        problems = cleaner.check(checked)
        rows.append(
            {
                "key": item.key,
                "source_id": item.record.source_id,
                "status": "rejected" if problems else "accepted",
                "reasons": [p.reason for p in problems],
                "problems": [p.as_dict() for p in problems],
                "segments": sum(len(t.segments) for _, t in templates),
                "record": output_row(item.record, texts, lang=target_lang),
            }
        )
    return rows


class ModelTranslator:
    """Segments -> translations with a causal LM: few-shot prompts, length-sorted batches, greedy decoding.

    Each batch gets a budget of length_factor x its longest segment's tokens + extra_new_tokens new tokens,
    capped at max_new_tokens; generation stops at the prompt's stop marker, a line break, or an eos id. With
    `cache_prefix` the header and examples are encoded once (their own tokenization, then each segment's) and
    their KV cache is reused by every batch.

    `lockstep` (a model sharded with FSDP2 over all ranks): every rank runs the same number of batches per call,
    the ranks with fewer segments (or none) decoding a one-token dummy, and `generate` keeps all ranks forwarding
    until the longest row of any rank is done (synced_gpus).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        prompt: FewShotPrompt,
        *,
        batch_size: int,
        max_new_tokens: int,
        length_factor: float,
        extra_new_tokens: int,
        cache_prefix: bool,
        device: Any,
        lockstep: bool = False,
    ) -> None:
        self.model, self.tokenizer, self.prompt = model, tokenizer, prompt
        self.stops = stops_for(tokenizer, model, strings=prompt.stop_strings)
        self.lockstep = lockstep
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.length_factor, self.extra_new_tokens = length_factor, extra_new_tokens
        self.device = device
        self.new_tokens = 0
        prefix_ids = tokenizer(prompt.prefix)["input_ids"] if cache_prefix and prompt.prefix else []
        self.prefix = encode_prefix(model, prefix_ids, device=device) if prefix_ids else None

    def encode(self, segment: str) -> list[int]:
        """The token ids of a segment's prompt (without the cached prefix when there is one)."""
        if self.prefix is None:
            return self.tokenizer(self.prompt.render(segment))["input_ids"]
        return self.tokenizer(self.prompt.suffix(segment), add_special_tokens=False)["input_ids"]

    def __call__(self, segments: Sequence[str]) -> list[str]:
        self.budget_cut: list[str] = []  # of this call's segments, those whose translation hit the budget
        prompts = [self.encode(s) for s in segments]
        lengths = [len(self.tokenizer(s, add_special_tokens=False)["input_ids"]) for s in segments]
        order = sorted(range(len(segments)), key=lambda i: (-len(prompts[i]), i))
        outputs = [""] * len(segments)
        batches: list[list[int] | None] = [
            order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)
        ]
        if self.lockstep:
            count = int(reduce_values([len(batches)], op="max")[0])
            batches += [None] * (count - len(batches))
        for batch in batches:
            # nothing left on this rank: a dummy batch keeps the sharded model's collectives in step
            if batch is None:
                generate_batch(
                    self.model,
                    self.tokenizer,
                    [self.encode("")],
                    max_new_tokens=1,
                    stops=self.stops,
                    synced=True,
                    prefix=self.prefix,
                    device=self.device,
                )
                continue
            longest = max(lengths[i] for i in batch)
            budget = min(self.max_new_tokens, math.ceil(self.length_factor * longest) + self.extra_new_tokens)
            generated = generate_batch(
                self.model,
                self.tokenizer,
                [prompts[i] for i in batch],
                max_new_tokens=max(1, budget),
                stops=self.stops,
                synced=self.lockstep,
                prefix=self.prefix,
                device=self.device,
            )
            self.new_tokens += generated.new_tokens
            for i, text, truncated in zip(batch, generated.texts, generated.truncated):
                outputs[i] = self.prompt.clean(text)
                if truncated:
                    self.budget_cut.append(segments[i])
        return outputs
