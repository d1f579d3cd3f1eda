"""launch/translate.py's job: translate records segment by segment, clean them, write outputs and a report.

Work is organised in chunks of `items_per_chunk` records, cut from the full input in order, so a chunk is the
same whatever the number of ranks. Chunks are dealt to ranks round-robin; every round, each rank translates one
chunk (all segments of its records, deduplicated, length-sorted and batched) and cleans the finished records,
and rank 0 gathers them and appends them to `progress.jsonl` in one write. Accepted and rejected records are
both written, so a re-run after a kill (or a preemption) skips every record already there and translates only
the rest: nothing is duplicated (rows are keyed) and nothing is lost (a line cut by the kill is dropped and its
record redone). Decoding is greedy and batches never mix chunks, so 1 and N ranks write the same outputs
(a chunk cut short by a kill is finished in smaller batches; only padding differs).

At the end rank 0 writes, in input order, one `<source stem>.<target_lang>.jsonl` per source with the accepted
records (loadable with `format: messages` or `format: preference`; see data/translate/items.py),
`rejected.jsonl` (each row with its reasons), `report.json`, and prints a summary. `settings.json` records the
settings that shape the output; a re-run with different ones is refused instead of mixing two runs.

Test hook: with SISU_TRANSLATE_KILL_AFTER_ROUNDS=N in the environment, rank 0 kills its own process (SIGKILL)
right after appending its N-th round, as a crash would.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from data.mix import select_fraction
from data.records import LoadReport
from data.sources import load_source
from data.translate.clean import REASONS, Cleaner, TranslatedField
from data.translate.items import Item, output_format, output_row, record_fields
from data.translate.prompt import FewShotPrompt
from data.translate.segment import split_text
from trainer.config import atomic_write_text, config_to_dict, write_config
from trainer.jobs import TranslateConfig

logger = logging.getLogger("sisu")

KILL_ENV = "SISU_TRANSLATE_KILL_AFTER_ROUNDS"
PROGRESS = "progress.jsonl"
REJECTED = "rejected.jsonl"
REPORT = "report.json"
SETTINGS = "settings.json"
EXAMPLES_PER_REASON = 3

Translate = Callable[[Sequence[str]], Sequence[str]]


# --- inputs --------------------------------------------------------------------------------------------------


def load_items(cfg: TranslateConfig) -> tuple[list[Item], list[LoadReport]]:
    """Every record of every source (after max_records and fraction), as keyed work items in input order."""
    if not cfg.sources:
        raise ValueError("translate: sources is empty; add e.g. {path: data/samples/chat_en.jsonl}")
    items, reports = [], []
    for index, source in enumerate(cfg.sources):
        records, report = load_source(source, on_invalid=cfg.on_invalid)
        other = sorted({r.lang for r in records} - {cfg.source_lang})
        if other:
            raise ValueError(
                f"{source.path}: records in {', '.join(other)} but source_lang is {cfg.source_lang!r} "
                f"(set sources.{index}.lang to keep only {cfg.source_lang!r} rows)"
            )
        selected = {id(r) for r in select_fraction(records, fraction=source.fraction, seed=cfg.seed)}
        report.num_selected = len(selected)
        items += [
            Item(f"{index}:{position}:{record.source_id}", index, record)
            for position, record in enumerate(records)
            if id(record) in selected
        ]
        reports.append(report)
    return items, reports


def settings(cfg: TranslateConfig) -> dict:
    """The settings that shape the translations (a re-run must use the same ones)."""
    raw = config_to_dict(cfg)
    model = {k: raw["model"][k] for k in ("path", "tokenizer", "init_config", "dtype")}
    out = {
        "model": model,
        "source_lang": cfg.source_lang,
        "target_lang": cfg.target_lang,
        "roles": raw["roles"],
        "prompt": raw["prompt"],
        "segments": raw["segments"],
        "max_new_tokens": cfg.generation.max_new_tokens,
        "cleaning": raw["cleaning"],
    }
    if cfg.model.init_config is not None:
        out["seed"] = cfg.seed  # random weights depend on it
    return out


def check_settings(out_dir: Path, current: dict) -> None:
    """Refuse to continue a run whose outputs were made with other settings."""
    path = out_dir / SETTINGS
    if not path.is_file() or not (out_dir / PROGRESS).is_file():
        return
    previous = json.loads(path.read_text(encoding="utf-8"))
    changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
    if changed:
        raise ValueError(
            f"{out_dir} holds a translation made with other settings ({', '.join(changed)} differ): "
            f"use another output_dir, or delete {PROGRESS} to start over"
        )


def output_names(cfg: TranslateConfig) -> list[str]:
    """File name of each source's translation: `<stem>.<target_lang>.jsonl`, prefixed by the index on clashes."""
    stems = [re.sub(r"[^\w.-]+", "_", Path(s.path).stem or s.path) for s in cfg.sources]
    names = [f"{stem}.{cfg.target_lang}.jsonl" for stem in stems]
    if len(set(names)) < len(names):
        names = [f"{i}_{name}" for i, name in enumerate(names)]
    return names


# --- translating one chunk ---------------------------------------------------------------------------------


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
    rows = []
    for item, templates in plans:
        texts: dict[str, str] = {}
        checked = []
        for field, template in templates:
            translations = [outputs[index[s]] for s in template.segments]
            texts[field.name] = template.fill(translations)
            pairs = tuple(zip(template.segments, translations))
            checked.append(TranslatedField(field.name, field.text, texts[field.name], pairs))
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
        from eval.generate import encode_prefix, stops_for

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
        from eval.generate import generate_batch
        from trainer.distributed import reduce_values

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
            if (
                batch is None
            ):  # nothing left on this rank: a dummy keeps the sharded model's collectives in step
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
            texts, count = generate_batch(
                self.model,
                self.tokenizer,
                [prompts[i] for i in batch],
                max_new_tokens=max(1, budget),
                stops=self.stops,
                synced=self.lockstep,
                prefix=self.prefix,
                device=self.device,
            )
            self.new_tokens += count
            for i, text in zip(batch, texts):
                outputs[i] = self.prompt.clean(text)
        return outputs


# --- the distributed loop --------------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress_line(done: int, total: int, *, new: int, segments: int, elapsed: float) -> str:
    """`translate: [#####-----] 12/40 items (30%), 0.85 items/s, 14.2 segments/s, eta 33s` (rank 0)."""
    width = 20
    filled = int(width * done / total) if total else width
    rate = new / elapsed if elapsed > 0 else 0.0
    eta = _duration((total - done) / rate) if rate > 0 else "?"
    return (
        f"translate: [{'#' * filled}{'-' * (width - filled)}] {done}/{total} items "
        f"({100 * done / max(total, 1):.0f}%), {rate:.3g} items/s, "
        f"{segments / elapsed if elapsed > 0 else 0.0:.3g} segments/s, eta {eta}"
    )


def run_chunks(
    items: Sequence[Item],
    *,
    work: Callable[[list[Item]], list[dict]],
    progress_path: Path,
    items_per_chunk: int,
) -> None:
    """Apply `work` to every chunk of items not yet in `progress_path`, appending its rows (all ranks call)."""
    from eval.generate import append_rows, rank_and_world, read_done, rewrite_rows
    from trainer.distributed import all_gather_objects, broadcast_object

    rank, world = rank_and_world()
    done_keys: list[str] = []
    if rank == 0:
        done_rows = read_done(progress_path)
        if progress_path.exists():
            rewrite_rows(progress_path, list(done_rows.values()))  # drop a line cut by a kill
        done_keys = sorted(done_rows)
    done = set(broadcast_object(done_keys, src=0))
    chunks = [list(items[i : i + items_per_chunk]) for i in range(0, len(items), items_per_chunk)]
    pending = [chunk for chunk in ([it for it in c if it.key not in done] for c in chunks) if chunk]
    finished = len(items) - sum(len(chunk) for chunk in pending)
    if rank == 0:
        if finished:
            logger.info(
                "translate: %d of %d items already in %s; continuing", finished, len(items), progress_path
            )
        logger.info(
            "translate: %d items to do in %d chunks of <= %d over %d rank(s)",
            len(items) - finished,
            len(pending),
            items_per_chunk,
            world,
        )
    kill_after = int(os.environ.get(KILL_ENV) or 0)
    start, new, segments = time.perf_counter(), 0, 0
    for round_index in range(-(-len(pending) // world)):
        mine = round_index * world + rank
        rows = work(pending[mine] if mine < len(pending) else [])  # every rank, every round (lockstep models)
        gathered = all_gather_objects(rows)
        if rank == 0:
            new_rows = [row for part in gathered for row in part]
            append_rows(progress_path, new_rows)
            new += len(new_rows)
            segments += sum(row["segments"] for row in new_rows)
            elapsed = time.perf_counter() - start
            logger.info(
                "%s", progress_line(finished + new, len(items), new=new, segments=segments, elapsed=elapsed)
            )
            if kill_after and round_index + 1 >= kill_after:
                os.kill(os.getpid(), signal.SIGKILL)


# --- outputs and report ----------------------------------------------------------------------------------------


def finalize(cfg: TranslateConfig, items: Sequence[Item], reports: Sequence[LoadReport]) -> dict:
    """Write the per-source outputs, rejected.jsonl and report.json from progress.jsonl; return the report."""
    from eval.generate import read_done, rewrite_rows

    out = Path(cfg.output_dir)
    rows = read_done(out / PROGRESS)
    missing = [item.key for item in items if item.key not in rows]
    if missing:
        raise RuntimeError(f"{len(missing)} items are missing from {out / PROGRESS} (e.g. {missing[0]})")
    names = output_names(cfg)
    accepted: list[list[dict]] = [[] for _ in cfg.sources]
    rejected, removed, flagged = [], Counter(), Counter()
    examples: dict[str, list[dict]] = {}
    segments = 0
    for item in items:
        row = rows[item.key]
        segments += row["segments"]
        if row["status"] == "accepted":
            accepted[item.source].append(row["record"])
            continue
        rejected.append({**row["record"], "reasons": row["reasons"], "problems": row["problems"]})
        removed[row["reasons"][0]] += 1
        for problem in row["problems"]:
            flagged[problem["reason"]] += 1
            shown = examples.setdefault(problem["reason"], [])
            if len(shown) < EXAMPLES_PER_REASON:
                shown.append({"source_id": item.record.source_id, **problem})
    sources = []
    for index, source in enumerate(cfg.sources):
        rewrite_rows(out / names[index], accepted[index])
        mine = [item for item in items if item.source == index]
        report = reports[index]
        sources.append(
            {
                "path": source.path,
                "format": source.format,
                "output": names[index],
                "output_format": output_format(mine[0].record) if mine else None,
                "items_in": len(mine),
                "items_out": len(accepted[index]),
                "load": {
                    "rows": report.num_rows,
                    "records": report.num_records,
                    "selected": report.num_selected,
                    "skipped": dict(report.skipped),
                },
            }
        )
    rewrite_rows(out / REJECTED, rejected)
    items_out = sum(len(rows_) for rows_ in accepted)
    report = {
        "items_in": len(items),
        "items_out": items_out,
        "removed": len(items) - items_out,
        "removed_by_reason": {reason: removed[reason] for reason in REASONS},
        "flagged_by_reason": {reason: flagged[reason] for reason in REASONS},
        "examples": {reason: examples[reason] for reason in REASONS if reason in examples},
        "segments": segments,
        "sources": sources,
        "rejected": REJECTED,
        "settings": settings(cfg),
    }
    atomic_write_text(out / REPORT, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


def format_summary(report: dict, *, path: str = "") -> str:
    """The printed summary: per source in/out, then removals by reason with one example each."""
    langs = report["settings"]
    lines = [
        f"translation {langs['source_lang']} -> {langs['target_lang']}: {report['items_in']} items in, "
        f"{report['items_out']} out, {report['removed']} removed ({report['segments']} segments)"
        + (f"  [{path}]" if path else ""),
        "",
        f"  {'source':<40} {'in':>6} {'out':>6}  output",
    ]
    for source in report["sources"]:
        lines.append(
            f"  {source['path']:<40} {source['items_in']:>6} {source['items_out']:>6}  "
            f"{source['output']} (format: {source['output_format']})"
        )
    lines += [
        "",
        "  removed = items whose first failing filter this is; flagged = items failing it at all",
        f"  {'reason':<22} {'removed':>7} {'flagged':>7}  example",
    ]
    for reason in REASONS:
        shown = report["examples"].get(reason, [])
        example = ""
        if shown:
            first = shown[0]
            example = f"{first['source_id']} {first['field']}: {first['detail']}: {first['snippet'][:60]!r}"
        lines.append(
            f"  {reason:<22} {report['removed_by_reason'][reason]:>7} "
            f"{report['flagged_by_reason'][reason]:>7}  {example}"
        )
    return "\n".join(lines)


# --- the job -------------------------------------------------------------------------------------------------


def build_prompt_and_cleaner(cfg: TranslateConfig) -> tuple[FewShotPrompt, Cleaner]:
    prompt = FewShotPrompt.from_config(cfg.prompt, source_lang=cfg.source_lang, target_lang=cfg.target_lang)
    cleaner = Cleaner(cfg.cleaning, target_lang=cfg.target_lang, markers=prompt.markers)
    return prompt, cleaner


def run_translate(cfg: TranslateConfig) -> None:

    from eval.generate import load_generation_model
    from trainer.distributed import barrier, init_distributed, seed_everything, setup_logging, teardown
    from trainer.model import load_tokenizer

    items, reports = load_items(cfg)  # fail fast on bad sources, before any process group
    prompt, cleaner = build_prompt_and_cleaner(cfg)
    out = Path(cfg.output_dir)
    current = settings(cfg)
    check_settings(out, current)
    info = init_distributed(backend=cfg.distributed.backend, timeout_minutes=cfg.distributed.timeout_minutes)
    try:
        setup_logging(rank=info.rank)
        seed_everything(cfg.seed)
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            write_config(cfg, out / "config.yaml")
            atomic_write_text(out / SETTINGS, json.dumps(current, indent=2, ensure_ascii=False) + "\n")
            for report in reports:
                logger.info("%s", report.summary())
        barrier()
        tokenizer = load_tokenizer(cfg.model)
        model = load_generation_model(
            cfg.model, sharding=cfg.sharding, info=info, vocab_size=len(tokenizer), seed=cfg.seed
        )
        translator = ModelTranslator(
            model,
            tokenizer,
            prompt,
            batch_size=cfg.generation.batch_size,
            max_new_tokens=cfg.generation.max_new_tokens,
            length_factor=cfg.segments.length_factor,
            extra_new_tokens=cfg.segments.extra_new_tokens,
            cache_prefix=cfg.prompt.cache_prefix,
            device=info.device,
            lockstep=cfg.sharding == "fsdp",
        )

        def work(chunk: list[Item]) -> list[dict]:
            return translate_chunk(
                chunk,
                translate=translator,
                roles=cfg.roles,
                max_chars=cfg.segments.max_chars,
                cleaner=cleaner,
                target_lang=cfg.target_lang,
            )

        start = time.perf_counter()
        run_chunks(items, work=work, progress_path=out / PROGRESS, items_per_chunk=cfg.items_per_chunk)
        if translator.new_tokens:
            elapsed = time.perf_counter() - start
            logger.info(
                "translate: rank %d generated %d tokens in %.1fs (%.1f tokens/s)",
                info.rank,
                translator.new_tokens,
                elapsed,
                translator.new_tokens / elapsed,
            )
        if info.is_main:
            report = finalize(cfg, items, reports)
            print(format_summary(report, path=str(out / REPORT)), flush=True)
        barrier()
    finally:
        teardown()


def dry_run(cfg: TranslateConfig, world_size: int) -> list[str]:
    """Validate, count records and segments, show the prompt of the first segment (sources that cannot be read
    from here, e.g. hub datasets offline, are reported and skipped)."""
    prompt, _ = build_prompt_and_cleaner(cfg)
    lines = [f"config valid; output_dir {cfg.output_dir}; world size {world_size}"]
    if not cfg.sources:
        raise ValueError("translate: sources is empty; add e.g. {path: data/samples/chat_en.jsonl}")
    records = []
    for source in cfg.sources:
        try:
            loaded, report = load_source(source, on_invalid=cfg.on_invalid)
        except (ValueError, OSError) as exc:
            lines.append(f"{source.path}: not reachable from here ({str(exc).splitlines()[0]})")
            continue
        selected = select_fraction(loaded, fraction=source.fraction, seed=cfg.seed)
        report.num_selected = len(selected)
        lines.append(report.summary())
        records += selected
    segments: list[str] = []
    for record in records:
        for field in record_fields(record, roles=cfg.roles):
            if field.translate:
                segments += split_text(field.text, max_chars=cfg.segments.max_chars).segments
    chunks = -(-len(records) // cfg.items_per_chunk)
    lines.append(
        f"{len(records)} items, {len(segments)} segments ({len(set(segments))} unique), {chunks} chunks of "
        f"<= {cfg.items_per_chunk}, {-(-chunks // world_size)} rounds over {world_size} rank(s)"
    )
    lines += ["prompt of the first segment:", prompt.render(segments[0] if segments else "<segment>")]
    return lines
