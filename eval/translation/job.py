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

Test hook: SISU_TRANSLATE_KILL_AFTER_ROUNDS (runtime/faults.py).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from data.errors import ConfigError, DataError, Unreachable
from data.mix import select_fraction
from data.records import LoadReport
from data.sources import load_source
from data.translate.clean import Cleaner
from data.translate.items import Item, record_fields
from data.translate.prompt import FewShotPrompt
from data.translate.segment import split_text
from eval.generate import check_run_settings, load_generation_model
from eval.job import generation_job
from eval.translation.chunks import run_chunks
from eval.translation.config import TranslateConfig, settings
from eval.translation.report import PROGRESS, REPORT, finalize, format_summary
from eval.translation.translator import ModelTranslator, translate_chunk
from runtime.distributed import barrier
from runtime.model import load_tokenizer

logger = logging.getLogger("sisu")

SETTINGS = "settings.json"


def load_items(cfg: TranslateConfig) -> tuple[list[Item], list[LoadReport]]:
    """Every record of every source (after max_records and fraction), as keyed work items in input order."""
    if not cfg.sources:
        raise ConfigError("translate: sources is empty; add e.g. {path: data/samples/chat_en.jsonl}")
    items, reports = [], []
    for index in range(len(cfg.sources)):
        source_items, report = source_items_of(cfg, index)
        items += source_items
        reports.append(report)
    return items, reports


def source_items_of(cfg: TranslateConfig, index: int) -> tuple[list[Item], LoadReport]:
    """The work items of source `index`; one-line errors for bad rows and records in another language."""
    source = cfg.sources[index]
    records, report = load_source(source, on_invalid=cfg.on_invalid)
    other = sorted({r.lang for r in records} - {cfg.source_lang})
    if other:
        raise DataError(
            f"{source.path}: records in {', '.join(other)} but source_lang is {cfg.source_lang!r} "
            f"(set sources.{index}.lang to keep only {cfg.source_lang!r} rows)"
        )
    selected = {id(r) for r in select_fraction(records, fraction=source.fraction, seed=cfg.seed)}
    report.num_selected = len(selected)
    items = [
        Item(f"{index}:{position}:{record.source_id}", index, record)
        for position, record in enumerate(records)
        if id(record) in selected
    ]
    return items, report


def check_settings(out_dir: Path, current: dict) -> None:
    """Refuse to continue a run whose outputs were made with other settings."""
    check_run_settings(out_dir / SETTINGS, current, progress=out_dir / PROGRESS, what="a translation")


def build_prompt_and_cleaner(cfg: TranslateConfig) -> tuple[FewShotPrompt, Cleaner]:
    prompt = FewShotPrompt.from_config(cfg.prompt, source_lang=cfg.source_lang, target_lang=cfg.target_lang)
    labels = [f"{prompt.source_label}:", f"{prompt.target_label}:"]  # each translates the other
    cleaner = Cleaner(cfg.cleaning, target_lang=cfg.target_lang, markers=prompt.markers, equivalents=[labels])
    return prompt, cleaner


def run_translate(cfg: TranslateConfig) -> None:

    items, reports = load_items(cfg)  # fail fast on bad sources, before any process group
    prompt, cleaner = build_prompt_and_cleaner(cfg)
    out = Path(cfg.output_dir)
    current = settings(cfg)
    check_settings(out, current)
    with generation_job(cfg, out, settings=(SETTINGS, current)) as info:
        if info.is_main:
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


def dry_run(cfg: TranslateConfig, world_size: int) -> list[str]:
    """Validate as the run does (sources, languages, earlier outputs' settings), count records and segments, show
    the prompt of the first segment. Only hub datasets unreachable offline are reported and skipped."""
    prompt, _ = build_prompt_and_cleaner(cfg)
    lines = [f"config valid; output_dir {cfg.output_dir}; world size {world_size}"]
    if not cfg.sources:
        raise ConfigError("translate: sources is empty; add e.g. {path: data/samples/chat_en.jsonl}")
    check_settings(Path(cfg.output_dir), settings(cfg))
    records = []
    for index, source in enumerate(cfg.sources):
        try:
            items, report = source_items_of(cfg, index)
        except Unreachable as exc:  # only a hub dataset offline; every other error stops as the run would
            lines.append(f"{source.path}: not reachable from here ({str(exc).splitlines()[0]})")
            continue
        lines.append(report.summary())
        records += [item.record for item in items]
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
