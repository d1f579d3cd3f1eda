"""launch/make_pairs.py's job: sample answers with the model itself, classify them, pair them, report.

Prompts are read and screened before any process group starts (eval/pairs/prompts.py). Answers are sampled with
eval's generation engine (ranks, batching, KV cache, FSDP sharding, the model's own chat template): every prompt
`samples_per_prompt` times, each batch from its own seed, appended to `generations.jsonl` as rounds finish, so a
killed run continues where it stopped and 1 and N ranks write the same samples. Rank 0 then classifies every
answer (language with langdetect; instructions with sisu's IFEval checkers in target_lang), pairs them
(eval/pairs/pairing.py) and writes, atomically:

- `pairs.jsonl`: `preference` rows (prompt, chosen, rejected, lang = target_lang, source_id) with each answer's
  language and instruction verdicts, the prompt's key and origin, and the model's fingerprint;
- `samples.jsonl`: every answer with its language, verdicts and truncation, and whether it was chosen or rejected;
- `report.json`: `prompts_in`, `pairs_out` and `skipped_by_reason` (they add up: prompts_in = pairs_out + the
  skips), with an example key per reason, answer statistics and the sources' load reports.

`run.json` (eval/record.py) records what the samples depend on; a re-run with another model, template, sampling,
sources or settings is refused, one with the same record generates nothing new and rewrites the same outputs.
"""

from __future__ import annotations

import collections
import json
import logging
from pathlib import Path

from data.errors import Unreachable
from data.files import atomic_write_text
from data.templates import ChatTemplate
from eval.engine import rewrite_rows
from eval.generate import (
    GenerationItem,
    generate_all,
    load_generation_model,
    resolve_eval_template,
    stops_for,
)
from eval.ifeval import check_responses
from eval.ifeval.langid import detect_language
from eval.job import generation_job
from eval.pairs.config import PairsConfig
from eval.pairs.pairing import Answer, Pair, choose_pair
from eval.pairs.prompts import (
    PairPrompt,
    Screened,
    benchmark_line,
    benchmark_prompts,
    benchmark_texts,
    load_pair_prompts,
    screen_prompts,
)
from eval.record import check_record, model_identity, run_identity
from runtime.config import config_to_dict
from runtime.distributed import barrier
from runtime.model import load_tokenizer

logger = logging.getLogger("sisu")

GENERATIONS = "generations.jsonl"


def run_record(cfg: PairsConfig, template: ChatTemplate) -> dict:
    """What the samples depend on (eval/record.py): the model, the template, the sampling, the sources, and every
    other setting except where outputs go and how ranks share the work."""
    raw = config_to_dict(cfg)
    for key in ("output_dir", "sharding", "distributed", "model", "template"):
        raw.pop(key)
    sources = {key: raw.pop(key) for key in ("sources", "instruction_sources", "benchmarks")}
    return run_identity(model=model_identity(cfg.model, seed=cfg.seed), template=template,
                        decoding=raw.pop("generation"), sources=sources, settings=raw)  # fmt: skip


def prepare(cfg: PairsConfig) -> tuple[Screened, list, list[str], ChatTemplate, object]:
    """Prompts loaded and screened, source reports, benchmark lines, the template and tokenizer (every rank, before
    the process group, so a bad source or an unreachable benchmark stops all ranks alike)."""
    prompts, reports = load_pair_prompts(cfg)
    refused, bench_lines = benchmark_texts(cfg.benchmarks)
    tokenizer = load_tokenizer(cfg.model)
    template = resolve_eval_template(tokenizer, cfg.template)
    screened = screen(cfg, prompts, refused=refused, tokenizer=tokenizer, template=template)
    return screened, reports, bench_lines, template, tokenizer


def screen(
    cfg: PairsConfig, prompts: list[PairPrompt], *, refused: set[str], tokenizer, template
) -> Screened:
    """`prompts` screened with the job's settings (eval/pairs/prompts.py)."""
    return screen_prompts(
        prompts,
        refused=refused,
        target_lang=cfg.target_lang,
        tokenizer=tokenizer,
        template=template,
        max_prompt_tokens=cfg.max_prompt_tokens,
    )


def run_pairs(cfg: PairsConfig) -> None:
    screened, reports, bench_lines, template, tokenizer = prepare(cfg)
    out = Path(cfg.output_dir)
    record = run_record(cfg, template)
    fingerprint = record["model"]["fingerprint"]
    check_record(out, record, outputs=[out / GENERATIONS], what="samples")
    with generation_job(cfg, out, record=record) as info:
        if info.is_main:
            for line in [r.summary() for r in reports] + bench_lines:
                logger.info("%s", line)
            logger.info(
                "make_pairs: %d prompts to sample x %d (left out before sampling: %s)",
                len(screened.prompts),
                cfg.generation.samples_per_prompt,
                ", ".join(f"{k}={len(v)}" for k, v in sorted(screened.skipped.items())) or "none",
            )
        barrier()
        model = load_generation_model(
            cfg.model, sharding=cfg.sharding, info=info, vocab_size=len(tokenizer), seed=cfg.seed
        )
        stops = stops_for(tokenizer, model, end_of_turn=template.end_of_turn)
        items = [
            GenerationItem(p.key, p.text, tuple(ids)) for p, ids in zip(screened.prompts, screened.token_ids)
        ]
        rows = generate_all(
            model,
            tokenizer,
            items,
            stops=stops,
            out_path=out / GENERATIONS,
            batch_size=cfg.prompts_per_batch,
            max_new_tokens=cfg.generation.max_new_tokens,
            device=info.device,
            language=cfg.target_lang,
            do_sample=True,
            temperature=cfg.generation.temperature,
            top_p=cfg.generation.top_p,
            lockstep=cfg.sharding == "fsdp",
            seed=cfg.seed,
            samples_per_prompt=cfg.generation.samples_per_prompt,
            progress="make_pairs",
        )
        if info.is_main:
            report = write_outputs(cfg, screened, rows, reports=reports, fingerprint=fingerprint, out=out)
            print(format_summary(report, path=str(out / "report.json")), flush=True)
        barrier()


def classify(
    prompt: PairPrompt, row: dict, *, target_lang: str
) -> tuple[list[Answer], list[list[bool] | None]]:
    """The answers of one generation row, with their language and strict instruction verdicts."""
    texts, truncated = row["responses"], row["truncated"]
    verdicts: list[list[bool] | None] = [None] * len(texts)
    if prompt.instructions is not None:
        verdicts = [
            strict for strict, _loose in check_responses(prompt.instructions, texts, language=target_lang)
        ]
    answers = [
        Answer(
            index=i,
            text=text,
            language=detect_language(text.strip()) if text.strip() else None,
            truncated=bool(cut),
            followed=sum(v) if v is not None else 0,
        )
        for i, (text, cut, v) in enumerate(zip(texts, truncated, verdicts))
    ]
    return answers, verdicts


def pair_row(prompt: PairPrompt, pair: Pair, verdicts: list, *, target_lang: str, fingerprint: str) -> dict:
    """A `preference` row (loadable as a source) with what made the pair."""
    return {
        "source_id": prompt.source_id,
        "lang": target_lang,
        "prompt": [dict(m) for m in prompt.messages],
        "chosen": pair.chosen.text,
        "rejected": pair.rejected.text,
        "chosen_language": pair.chosen.language,
        "rejected_language": pair.rejected.language,
        "chosen_verdicts": verdicts[pair.chosen.index],
        "rejected_verdicts": verdicts[pair.rejected.index],
        "instruction_id_list": list(prompt.instructions.instruction_id_list) if prompt.instructions else None,
        "key": prompt.key,
        "origin": prompt.origin,
        "model_fingerprint": fingerprint,
    }


def write_outputs(
    cfg: PairsConfig, screened: Screened, rows: list[dict], *, reports: list, fingerprint: str, out: Path
) -> dict:
    """Classify and pair every prompt's answers; write pairs.jsonl, samples.jsonl and report.json (rank 0)."""
    by_key = {str(row["key"]): row for row in rows}
    skipped: dict[str, list[str]] = {reason: list(keys) for reason, keys in screened.skipped.items()}
    pairs, samples = [], []
    languages: collections.Counter = collections.Counter()
    num_truncated = num_answers = 0
    for prompt in screened.prompts:
        row = by_key.get(prompt.key)
        assert row is not None, f"no samples for {prompt.key}: generation finished without it"
        answers, verdicts = classify(prompt, row, target_lang=cfg.target_lang)
        result = choose_pair(answers, target_lang=cfg.target_lang, allow_truncated=cfg.allow_truncated_chosen)
        roles = {}
        if isinstance(result, Pair):
            roles = {result.chosen.index: "chosen", result.rejected.index: "rejected"}
            pairs.append(
                pair_row(prompt, result, verdicts, target_lang=cfg.target_lang, fingerprint=fingerprint)
            )
        else:
            skipped.setdefault(result, []).append(prompt.key)
        for answer, verdict in zip(answers, verdicts):
            languages[answer.language or "unknown"] += 1
            num_truncated += answer.truncated
            num_answers += 1
            samples.append(
                {
                    "key": prompt.key,
                    "sample": answer.index,
                    "response": answer.text,
                    "language": answer.language,
                    "truncated": answer.truncated,
                    "verdicts": verdict,
                    "role": roles.get(answer.index),
                }
            )
    rewrite_rows(out / "pairs.jsonl", pairs)
    rewrite_rows(out / "samples.jsonl", samples)
    num_prompts = len(screened.prompts) + sum(len(keys) for keys in screened.skipped.values())
    report = {
        "prompts_in": num_prompts,
        "pairs_out": len(pairs),
        "skipped_by_reason": {reason: len(keys) for reason, keys in sorted(skipped.items())},
        "skipped_examples": {reason: keys[0] for reason, keys in sorted(skipped.items())},
        "answers": num_answers,
        "answers_by_language": dict(languages.most_common()),
        "answers_truncated": num_truncated,
        "target_lang": cfg.target_lang,
        "samples_per_prompt": cfg.generation.samples_per_prompt,
        "model_fingerprint": fingerprint,
        "sources": [
            {
                "source": r.source,
                "rows": r.num_rows,
                "records": r.num_records,
                "selected": r.num_selected,
                "skipped": dict(r.skipped),
            }
            for r in reports
        ],
    }
    assert report["prompts_in"] == report["pairs_out"] + sum(report["skipped_by_reason"].values())
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


def format_summary(report: dict, *, path: str = "") -> str:
    """The table make_pairs prints at the end."""
    width = max([len("prompts in"), *(len(reason) for reason in report["skipped_by_reason"])]) + 2
    lines = [
        f"make_pairs: {report['pairs_out']} pairs from {report['prompts_in']} prompts"
        + (f" ({path})" if path else ""),
        f"  {'prompts in':<{width}}{report['prompts_in']:>8}",
        f"  {'pairs out':<{width}}{report['pairs_out']:>8}",
    ]
    for reason, count in report["skipped_by_reason"].items():
        lines.append(f"  {reason:<{width}}{count:>8}   e.g. {report['skipped_examples'][reason]}")
    languages = ", ".join(f"{lang} {n}" for lang, n in report["answers_by_language"].items())
    lines.append(
        f"  answers: {report['answers']} ({languages}); {report['answers_truncated']} cut at max_new_tokens"
    )
    return "\n".join(lines)


def dry_run(cfg: PairsConfig, world_size: int) -> list[str]:
    """Validate as the run does (sources, benchmarks, template, earlier outputs' settings), count the prompts and
    what screening leaves out, and show the first prompt as the model will see it. Only what is out of reach
    offline (hub data, benchmarks or models not cached) is a note; anything else fails as the run would."""
    lines = [f"config valid; output_dir {cfg.output_dir}; world size {world_size}; sharding {cfg.sharding}"]
    unreachable = []
    try:
        prompts, reports = load_pair_prompts(cfg)
        lines += [r.summary() for r in reports]
    except Unreachable as exc:
        unreachable.append(f"sources: not reachable from here ({str(exc).splitlines()[0]})")
    refused: set[str] = set()
    for index, bench in enumerate(cfg.benchmarks):
        try:
            texts = benchmark_prompts(bench, index=index)
        except Unreachable as exc:
            unreachable.append(
                f"benchmark {bench.path}: not reachable from here ({str(exc).splitlines()[0]})"
            )
            continue
        refused.update(texts)
        lines.append(benchmark_line(bench, len(texts)))
    try:
        tokenizer = load_tokenizer(cfg.model)
    except Unreachable as exc:
        unreachable.append(f"model: not reachable from here ({str(exc).splitlines()[0]})")
    if unreachable:
        return lines + unreachable + ["(no prompt counts: part of the input is out of reach)"]
    template = resolve_eval_template(tokenizer, cfg.template)
    out = Path(cfg.output_dir)
    check_record(out, run_record(cfg, template), outputs=[out / GENERATIONS], what="samples")
    screened = screen(cfg, prompts, refused=refused, tokenizer=tokenizer, template=template)
    batches = -(-len(screened.prompts) // cfg.prompts_per_batch)
    skips = ", ".join(f"{k}={len(v)}" for k, v in sorted(screened.skipped.items())) or "none"
    lines.append(
        f"{len(screened.prompts)} prompts to sample x {cfg.generation.samples_per_prompt} (left out: {skips}); "
        f"{batches} batches of <= {cfg.prompts_per_batch} prompts, {-(-batches // world_size)} rounds over "
        f"{world_size} rank(s); chat template {template.name}"
    )
    if screened.prompts:
        lines += ["first prompt as rendered:", tokenizer.decode(screened.token_ids[0])]
    return lines
