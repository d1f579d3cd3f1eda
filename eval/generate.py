"""Batched generation with the KV cache (greedy, or sampled from per-batch seeds), on the resumable engine.

Prompts are sorted by token length (longest first) so each batch wastes little padding; the batches are cut from
the whole sorted list (the same for any number of ranks and after a restart) and run on eval/engine.py (dealt to
ranks round by round, appended by rank 0, a killed run continued, a batch written in part generated again whole).
The final file is rewritten in the original prompt order.

With `sharding: replicate` every rank holds a full model copy; with `sharding: fsdp` the model is sharded and
all ranks step in lockstep (HF `generate(synced_gpus=True)` keeps forwarding until every rank is done, and ranks
with no batch left in a round generate a dummy prompt).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from data.errors import ConfigError
from data.templates import ChatTemplate
from data.text import cut_at_stop
from eval.engine import read_done, rewrite_rows, run_units
from runtime.distributed import rank, world_size
from runtime.profiling import named_range

logger = logging.getLogger("sisu")


def load_generation_model(
    model_cfg: Any, *, sharding: str, info: Any, vocab_size: int, seed: int
) -> torch.nn.Module:
    """A model for generation in eval mode: a full copy per rank (`replicate`), or sharded over all ranks with
    FSDP2 (`fsdp`: for models larger than one device, such as Poro-34B on a 64 GB MI250X GCD; the ranks then
    generate in lockstep). bf16 on GPU unless `model.dtype` says otherwise."""
    from runtime.builder import ShardingSettings, build_sharded_model
    from runtime.model import build_model

    if sharding == "fsdp":
        return build_sharded_model(
            model_cfg,
            ShardingSettings(),
            info=info,
            vocab_size=vocab_size,
            seed=seed,
            trainable=False,
        )
    torch.manual_seed(seed)
    model = build_model(model_cfg, vocab_size=vocab_size)
    if info.device.type == "cuda" and model_cfg.dtype == "auto":
        model = model.to(torch.bfloat16)
    return model.to(info.device).eval()


@dataclass(frozen=True)
class GenerationItem:
    """One prompt to answer: its key, its text (written to the output rows) and its token ids as rendered with
    the chat template and the generation prompt (`render_prompts` for one-turn prompts)."""

    key: Any
    prompt: str
    token_ids: tuple[int, ...]


@dataclass(frozen=True)
class Stops:
    """Where a generated row ends: at any of `token_ids`, or at the first of `strings` (cut before it)."""

    token_ids: tuple[int, ...]
    strings: tuple[str, ...] = ()


def stops_for(
    tokenizer: Any, model: torch.nn.Module, *, end_of_turn: str | None = None, strings: Sequence[str] = ()
) -> Stops:
    """The tokenizer's eos, every eos id of the model's generation config, and the chat template's end of turn:
    as a token when the tokenizer has it as one, else as a stop string."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is not None:
        ids.update([configured] if isinstance(configured, int) else configured)
    texts = list(strings)
    if end_of_turn:
        encoded = tokenizer(end_of_turn, add_special_tokens=False)["input_ids"]
        if len(encoded) == 1:
            ids.add(encoded[0])
        else:
            texts.append(end_of_turn)
    return Stops(tuple(sorted(ids)), tuple(texts))


def resolve_eval_template(tokenizer: object, name: str) -> ChatTemplate:
    """The template prompts are rendered with: the model's own (sisu exports the one it trained with), or
    `template` when set. A built-in template whose markers the tokenizer lacks is refused: the model never saw
    them as tokens, so its answers would say nothing about the model."""
    template = ChatTemplate.resolve(tokenizer, name)
    missing = template.missing_markers(tokenizer)
    if missing:
        raise ConfigError(
            f"template {template.name!r} writes {', '.join(missing)}, which this tokenizer does not have as "
            "tokens (a base model, or one trained with another template): use a model sisu trained with that "
            "template (its export carries it), or set template to the one the model was trained with"
        )
    return template


def render_prompts(tokenizer: Any, template: Any, prompts: Sequence[str]) -> list[list[int]]:
    """Each prompt as a one-turn chat in `template` (a data.templates.ChatTemplate) with the generation prompt,
    tokenized without extra special tokens (the template writes the ones it wants)."""
    out = []
    for prompt in prompts:
        text = template.render(tokenizer, [{"role": "user", "content": prompt}], add_generation_prompt=True)
        out.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return out


@dataclass(frozen=True)
class PromptPrefix:
    """Token ids shared at the start of many prompts (e.g. few-shot examples) and their KV cache."""

    token_ids: tuple[int, ...]
    cache: Any


def _cache_kwarg(model: torch.nn.Module) -> str:
    """Name of the KV-cache argument: `cache` in recent transformers, `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.no_grad()
def encode_prefix(model: torch.nn.Module, token_ids: Sequence[int], *, device: torch.device) -> PromptPrefix:
    """Run the shared prefix once; generate_batch(prefix=...) then prefills only each prompt's own tokens."""
    from transformers import DynamicCache

    try:
        cache = DynamicCache(config=model.config)
    except TypeError:  # transformers < 4.56
        cache = DynamicCache()
    ids = torch.tensor([list(token_ids)], dtype=torch.long, device=device)
    model(input_ids=ids, use_cache=True, **{_cache_kwarg(model): cache})
    return PromptPrefix(tuple(token_ids), cache)


@dataclass(frozen=True)
class Generated:
    texts: list[str]
    new_tokens: int  # generated tokens, the stopping token included
    truncated: list[bool]  # the row ran into max_new_tokens without reaching a stop


@torch.no_grad()
def generate_batch(
    model: torch.nn.Module,
    tokenizer: Any,
    token_ids: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    stops: Stops,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    synced: bool = False,
    prefix: PromptPrefix | None = None,
    device: torch.device,
) -> Generated:
    """Left-padded batched decoding with the KV cache; returns the texts, the number of generated tokens, and
    which rows ran into `max_new_tokens` before a stop.

    A row ends at one of `stops.token_ids` (eos, end of turn), or at the first of `stops.strings` (an end of turn
    that is no single token; completion-mode prompts such as translation); the text is cut before the stop
    string. With `prefix` (see encode_prefix)
    every prompt is `prefix.token_ids + token_ids[row]`: the prefix's cache is reused and the padding sits
    between the prefix and each row's own tokens (masked; positions follow the mask).
    """
    longest = max(len(ids) for ids in token_ids)
    shared = len(prefix.token_ids) if prefix is not None else 0
    pad = tokenizer.pad_token_id
    input_ids = torch.full((len(token_ids), shared + longest), pad, dtype=torch.long)
    attention = torch.zeros((len(token_ids), shared + longest), dtype=torch.long)
    if prefix is not None:
        input_ids[:, :shared] = torch.tensor(prefix.token_ids, dtype=torch.long)
        attention[:, :shared] = 1
    for row, ids in enumerate(token_ids):
        input_ids[row, shared + longest - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention[row, shared + longest - len(ids) :] = 1
    stop_ids = list(stops.token_ids)
    kwargs: dict[str, Any] = {"do_sample": do_sample}
    if do_sample:
        kwargs.update(temperature=temperature, top_p=top_p)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if stops.strings:
        kwargs.update(stop_strings=list(stops.strings), tokenizer=tokenizer)
    if prefix is not None:
        cache = copy.deepcopy(prefix.cache)  # generate extends the cache it is given
        cache.batch_repeat_interleave(len(token_ids))
        kwargs[_cache_kwarg(model)] = cache
    with named_range("generate"):
        output = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            max_new_tokens=max_new_tokens,
            eos_token_id=stop_ids,
            pad_token_id=pad,
            use_cache=True,
            synced_gpus=synced,
            **kwargs,
        )
    new = output[:, shared + longest :].cpu()
    texts, truncated, count = [], [], 0
    for row in new.tolist():
        cut = len(row)
        for i, token in enumerate(row):
            if token in stop_ids:
                cut = i
                break
        count += min(len(row), cut + 1)
        decoded = tokenizer.decode(row[:cut], skip_special_tokens=True)
        text = cut_at_stop(decoded, stops.strings)
        texts.append(text)
        truncated.append(cut == len(row) and len(row) >= max_new_tokens and text == decoded)
    return Generated(texts, count, truncated)


def batch_seed(seed: int, keys: Sequence[Any]) -> int:
    """The sampling seed of one batch: derived from the run's seed and the batch's keys, so a prompt's samples do
    not depend on the number of ranks, on which rank draws its batch, or on a restart."""
    blob = json.dumps([seed, [str(key) for key in keys]], ensure_ascii=False).encode("utf-8")
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") & (2**63 - 1)


def generate_all(
    model: torch.nn.Module,
    tokenizer: Any,
    items: Sequence[GenerationItem],
    *,
    stops: Stops,
    out_path: Path,
    batch_size: int,
    max_new_tokens: int,
    device: torch.device,
    language: str,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    lockstep: bool = False,
    seed: int | None = None,
    samples_per_prompt: int | None = None,
    progress: str = "generation",
) -> list[dict]:
    """Generate responses for every item not yet in `out_path` on the engine (eval/engine.py); returns all rows in
    the items' order (rank 0). Batches of `batch_size` prompts are cut from all items sorted by length; with
    `do_sample` and a `seed` each batch samples from its own seed (`batch_seed`), so 1 and N ranks and a restart
    write the same samples. With `samples_per_prompt` a row holds `responses` and `truncated` as lists."""
    order = sorted(range(len(items)), key=lambda i: (-len(items[i].token_ids), i))
    copies = samples_per_prompt or 1

    def work(batch: Sequence[int] | None) -> tuple[list[dict], dict[str, int]]:
        if batch is None and not lockstep:
            return [], {}
        chosen = list(batch or [])
        prompts = [list(items[i].token_ids) for i in chosen for _ in range(copies)] or [
            list(items[order[0]].token_ids)
        ]
        if do_sample and seed is not None:
            torch.manual_seed(batch_seed(seed, [items[i].key for i in chosen]))
        out = generate_batch(model, tokenizer, prompts, max_new_tokens=max_new_tokens, stops=stops, do_sample=do_sample,
                             temperature=temperature, top_p=top_p, synced=lockstep and world_size() > 1, device=device)  # fmt: skip
        rows = []
        for n, i in enumerate(chosen):
            texts, cut = (
                out.texts[n * copies : (n + 1) * copies],
                out.truncated[n * copies : (n + 1) * copies],
            )
            row = {"key": items[i].key, "prompt": items[i].prompt}
            row.update({"response": texts[0], "language": language, "truncated": cut[0]} if samples_per_prompt is None
                       else {"responses": texts, "language": language, "truncated": cut})  # fmt: skip
            rows.append(row)
        return rows, {"tokens": out.new_tokens}

    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    out_path = Path(out_path)
    run_units(
        batches,
        [str(item.key) for item in items],
        work=work,
        out_path=out_path,
        name=progress,
        unit="prompts",
    )
    if rank() != 0:
        return []
    written = read_done(out_path)
    ordered = [written[str(item.key)] for item in items if str(item.key) in written]
    rewrite_rows(out_path, ordered)
    return ordered
