"""launch/translate.py's job: translate records segment by segment, clean them, write outputs and a report.

Work is organised in chunks of `items_per_chunk` records, cut from the full input in order, so a chunk is the
same whatever the number of ranks, and run on the generation engine (eval/engine.py): every round each rank
translates one chunk (all segments of its records, deduplicated, length-sorted and batched) and cleans the
finished records, and rank 0 appends them to `progress.jsonl` in one write. Accepted and rejected records are
both written, so a re-run after a kill (or a preemption) skips every chunk already there: nothing is duplicated
(rows are keyed) and nothing is lost (a line cut by the kill is dropped, a chunk written in part is translated
again whole). Decoding is greedy and batches never mix chunks, so 1 and N ranks, and a killed run and its
restart, write the same outputs.

At the end rank 0 writes, in input order, one `<source stem>.<target_lang>.jsonl` per source with the accepted
records (loadable with `format: messages` or `format: preference`; see data/translate/items.py),
`rejected.jsonl` (each row with its reasons), `report.json`, and prints a summary. `run.json` (eval/record.py)
records the model, the sources and the settings that shape the output; a re-run with different ones is refused
instead of mixing two runs.

Test hook: SISU_DEBUG_KILL_AFTER_ROUNDS (runtime/faults.py).
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
from eval.engine import run_units
from eval.generate import load_generation_model
from eval.job import generation_job
from eval.record import check_record, model_identity, run_identity
from eval.translation.config import TranslateConfig, settings
from eval.translation.report import PROGRESS, REPORT, finalize, format_summary
from eval.translation.translator import ModelTranslator, Translate, translate_chunk
from runtime.distributed import barrier
from runtime.model import load_tokenizer

logger = logging.getLogger("sisu")


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


def run_record(cfg: TranslateConfig) -> dict:
    """What the translations depend on (eval/record.py): the model, the decoding budget, the sources (two datasets
    whose ids are row numbers must never share translations) and the prompt, segmenting and cleaning settings."""
    shaping = settings(cfg)
    return run_identity(
        model=model_identity(cfg.model, seed=cfg.seed),
        template=None,  # completion prompts of the job's own (data/translate/prompt.py)
        decoding={"max_new_tokens": shaping.pop("max_new_tokens"), "do_sample": False},
        sources=shaping.pop("sources"),
        settings={key: value for key, value in shaping.items() if key != "model"},
    )


def check_settings(out_dir: Path, record: dict) -> None:
    """Refuse to continue a run whose outputs were made with another model, other sources or settings."""
    check_record(out_dir, record, outputs=[out_dir / PROGRESS], what="translations")


def build_prompt_and_cleaner(cfg: TranslateConfig) -> tuple[FewShotPrompt, Cleaner]:
    prompt = FewShotPrompt.from_config(cfg.prompt, source_lang=cfg.source_lang, target_lang=cfg.target_lang)
    labels = [f"{prompt.source_label}:", f"{prompt.target_label}:"]  # each translates the other
    cleaner = Cleaner(cfg.cleaning, target_lang=cfg.target_lang, markers=prompt.markers, equivalents=[labels])
    return prompt, cleaner


def translate_all(
    cfg: TranslateConfig, items: list[Item], *, translate: Translate, cleaner: Cleaner, out_path: Path
) -> None:
    """Every item not yet in `out_path`: chunks of `items_per_chunk` consecutive items on the generation engine,
    each translated with one call of `translate` (all ranks call; see the module docstring)."""

    def work(chunk: list[int] | None) -> tuple[list[dict], dict[str, int]]:
        rows = translate_chunk(  # also with no chunk: a sharded model translates in lockstep
            [items[i] for i in chunk or []],
            translate=translate,
            roles=cfg.roles,
            max_chars=cfg.segments.max_chars,
            cleaner=cleaner,
            target_lang=cfg.target_lang,
        )
        return rows, {"segments": sum(row["segments"] for row in rows)}

    size = cfg.items_per_chunk
    chunks = [list(range(i, min(i + size, len(items)))) for i in range(0, len(items), size)]
    logger.info("translate: %d items in %d chunks of <= %d", len(items), len(chunks), size)
    run_units(chunks, [item.key for item in items], work=work, out_path=out_path, name="translate", unit="items")


def run_translate(cfg: TranslateConfig) -> None:

    items, reports = load_items(cfg)  # fail fast on bad sources, before any process group
    prompt, cleaner = build_prompt_and_cleaner(cfg)
    out = Path(cfg.output_dir)
    record = run_record(cfg)
    check_settings(out, record)
    with generation_job(cfg, out, record=record) as info:
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

        start = time.perf_counter()
        translate_all(cfg, items, translate=translator, cleaner=cleaner, out_path=out / PROGRESS)
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
    check_settings(Path(cfg.output_dir), run_record(cfg))
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
