"""launch/eval.py's job: generate responses for each IFEval benchmark, score them, write reports.

Per benchmark, OUTPUT_DIR/<name>/ receives responses.jsonl (key, prompt, response, language, truncated: the
response ran into generation.max_new_tokens), run.json (the model, template, decoding and prompt source that wrote
them, eval/record.py: a re-run continues them only when these match), verdicts.jsonl, and scores.json (IFEval metrics plus
`response_language_rate` and the keys that failed it, and `num_truncated` with the truncated keys). OUTPUT_DIR/tb/ gets
the same numbers for TensorBoard and OUTPUT_DIR/categories.png the per-category chart (EN vs FI side by side).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from data.errors import ConfigError, DataError
from data.files import atomic_write_text
from data.templates import ChatTemplate
from eval.benchmarks import read_benchmark_prompts
from eval.config import BenchmarkConfig, EvalConfig
from eval.generate import (
    GenerationItem,
    generate_all,
    load_generation_model,
    render_prompts,
    resolve_eval_template,
    stops_for,
)
from eval.ifeval import Prompt, format_table, score, write_outputs
from eval.job import generation_job
from eval.judge.job import (
    JUDGE_RECORD,
    answer_files,
    answer_questions,
    check_judge_outputs,
    judge_questions,
    judge_record,
    read_baseline,
    select_questions,
)
from eval.language import response_language_rate
from eval.record import check_record, model_identity, run_identity, write_record
from eval.report import RunScores, category_accuracies, plot_categories
from runtime.model import load_tokenizer

logger = logging.getLogger("sisu")


@dataclasses.dataclass(frozen=True)
class BenchmarkSelection:
    """The prompts a benchmark evaluates and how many of its file's prompts the options left out."""

    prompts: list[Prompt]
    num_read: int
    num_other_language: int  # ask for another response language (exclude_other_languages)
    num_beyond_limit: int

    def describe(self) -> str:
        parts = [f"{len(self.prompts)} of {self.num_read} prompts"]
        if self.num_other_language:
            parts.append(f"{self.num_other_language} asking for another response language left out")
        if self.num_beyond_limit:
            parts.append(f"{self.num_beyond_limit} beyond limit left out")
        return "; ".join(parts)


def select_benchmark(bench: BenchmarkConfig) -> BenchmarkSelection:
    """Prompts of a benchmark (local IFEval-schema JSONL, or a hub dataset), filtered and limited, with counts."""
    prompts = read_benchmark_prompts(
        bench.path, subset=bench.subset, split=bench.split, what=f"benchmark {bench.name}"
    )
    num_read = len(prompts)
    if bench.exclude_other_languages:
        prompts = [p for p in prompts if all(lang == bench.language for lang in p.response_languages())]
    num_other_language = num_read - len(prompts)
    num_beyond_limit = 0
    if bench.limit is not None:
        num_beyond_limit = max(0, len(prompts) - bench.limit)
        prompts = prompts[: bench.limit]
    if not prompts:
        raise DataError(f"benchmark {bench.name}: no prompts left after filtering")
    return BenchmarkSelection(prompts, num_read, num_other_language, num_beyond_limit)


def prompt_key(prompt: Prompt) -> object:
    return prompt.key if prompt.key is not None else prompt.prompt


def benchmark_record(cfg: EvalConfig, bench: BenchmarkConfig, template: ChatTemplate, model: dict) -> dict:
    """What a benchmark's responses depend on (eval/record.py): the model, the chat template, the decoding and the
    prompts' source. Written beside responses.jsonl; a run continues earlier responses only when it matches (a
    larger `limit` continues them)."""
    generation = cfg.generation
    decoding = {"max_new_tokens": generation.max_new_tokens, "do_sample": generation.do_sample}
    if generation.do_sample:
        decoding.update(temperature=generation.temperature, top_p=generation.top_p, seed=cfg.seed)
    source = {"path": bench.path, "subset": bench.subset, "split": bench.split}
    return run_identity(model=model, template=template, decoding=decoding, sources=source)


def check_earlier_responses(bench_dir: Path, record: dict) -> None:
    """Refuse (one line) to continue responses that another model, template, decoding or prompt source wrote."""
    check_record(bench_dir, record, outputs=[bench_dir / "responses.jsonl"], what="responses")


def run_eval(cfg: EvalConfig) -> None:
    if not cfg.benchmarks:
        raise ConfigError("eval: benchmarks is empty; add e.g. {name: ifeval_en, path: google/IFEval}")
    names = [b.name for b in cfg.benchmarks]
    if len(set(names)) != len(names):
        raise ConfigError(f"eval: benchmark names must be unique, got {names}")
    # every rank reads the benchmarks and checks earlier outputs before the process group starts, so a refusal
    # stops all of them alike
    ifeval = [(bench, select_benchmark(bench)) for bench in cfg.benchmarks if bench.kind == "ifeval"]
    judged = [(bench, select_questions(bench)) for bench in cfg.benchmarks if bench.kind == "judge"]
    baselines = {bench.name: read_baseline(bench, questions) for bench, questions in judged}
    tokenizer = load_tokenizer(cfg.model)
    template = resolve_eval_template(tokenizer, cfg.template)
    out = Path(cfg.output_dir)
    model = model_identity(cfg.model, seed=cfg.seed)
    records = {bench.name: benchmark_record(cfg, bench, template, model) for bench in cfg.benchmarks}
    for bench, _selection in ifeval:
        check_earlier_responses(out / bench.name, records[bench.name])
    judge_tokenizer = judge_template = None
    judge_records = {}
    if judged:
        judge_tokenizer = load_tokenizer(cfg.judge.model)
        judge_template = resolve_eval_template(judge_tokenizer, cfg.judge.template)
        for bench, questions in judged:
            bench_dir = out / bench.name
            check_record(
                bench_dir, records[bench.name], outputs=answer_files(bench_dir, questions), what="answers"
            )
            judge_records[bench.name] = judge_record(cfg, bench, judge_template, records[bench.name])
            check_judge_outputs(bench_dir, judge_records[bench.name])
    with generation_job(cfg, out) as info:
        model = load_generation_model(
            cfg.model, sharding=cfg.sharding, info=info, vocab_size=len(tokenizer), seed=cfg.seed
        )
        stops = stops_for(tokenizer, model, end_of_turn=template.end_of_turn)
        if info.is_main:
            logger.info(
                "chat template: %s; generation stops at token ids %s%s",
                template.name,
                list(stops.token_ids),
                f" and at {list(stops.strings)}" if stops.strings else "",
            )
        results = {}
        for bench, selection in ifeval:
            prompts = selection.prompts
            bench_dir = out / bench.name
            if info.is_main:
                write_record(bench_dir, records[bench.name])
                logger.info("%s: %s (%s)", bench.name, selection.describe(), bench.path)
            rendered = render_prompts(tokenizer, template, [p.prompt for p in prompts])
            items = [GenerationItem(prompt_key(p), p.prompt, tuple(ids)) for p, ids in zip(prompts, rendered)]
            rows = generate_all(
                model,
                tokenizer,
                items,
                stops=stops,
                out_path=bench_dir / "responses.jsonl",
                batch_size=cfg.generation.batch_size,
                max_new_tokens=cfg.generation.max_new_tokens,
                device=info.device,
                language=bench.language,
                do_sample=cfg.generation.do_sample,
                temperature=cfg.generation.temperature,
                top_p=cfg.generation.top_p,
                lockstep=cfg.sharding == "fsdp",
                seed=cfg.seed,
            )
            if info.is_main:
                results[bench.name] = score_benchmark(bench, prompts, rows, bench_dir)
        answers = {}
        for bench, questions in judged:
            bench_dir = out / bench.name
            if info.is_main:
                write_record(bench_dir, records[bench.name])
                logger.info(
                    "%s: %d questions (%s), answered turn by turn", bench.name, len(questions), bench.path
                )
            answers[bench.name] = answer_questions(model, tokenizer, template, stops, questions, bench=bench,
                                                   bench_dir=bench_dir, cfg=cfg, info=info)  # fmt: skip
        if judged:
            del model  # the judge takes its place (a 70B judge after a 34B model on the same devices)
            release_memory()
            judge = load_generation_model(cfg.judge.model, sharding=cfg.judge.sharding, info=info,
                                          vocab_size=len(judge_tokenizer), seed=cfg.seed)  # fmt: skip
            judge_stops = stops_for(judge_tokenizer, judge, end_of_turn=judge_template.end_of_turn)
            for bench, questions in judged:
                bench_dir = out / bench.name
                if info.is_main:
                    write_record(bench_dir, judge_records[bench.name], name=JUDGE_RECORD)
                scores = judge_questions(judge, judge_tokenizer, judge_template, judge_stops, questions,
                                         answers[bench.name], baselines[bench.name], bench=bench,
                                         bench_dir=bench_dir, cfg=cfg, info=info)  # fmt: skip
                if info.is_main:
                    results[bench.name] = scores
        if info.is_main:
            write_summaries(out, results)


def release_memory() -> None:
    """Return what a freed model held to the allocator and the device."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def score_benchmark(bench: BenchmarkConfig, prompts: list[Prompt], rows: list[dict], bench_dir: Path) -> dict:
    responses = {row["key"]: row["response"] for row in rows}
    scores = score(prompts, responses, language=bench.language)
    write_outputs(scores, bench_dir)
    rate, failed = response_language_rate(rows, bench.language)
    truncated = [row["key"] for row in rows if row.get("truncated")]
    summary = scores.as_dict()
    summary.update(
        response_language_rate=rate,
        response_language_failed_keys=failed,
        num_truncated=len(truncated),
        truncated_keys=truncated,
        benchmark=bench.name,
    )
    atomic_write_text(bench_dir / "scores.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print(
        f"\n{bench.name}: {len(rows)} responses ({len(truncated)} cut at generation.max_new_tokens); "
        f"response language {bench.language}: {100 * rate:.1f}%"
    )
    print(format_table(scores))
    return summary


def judge_scalars(summary: dict) -> dict[str, float]:
    """The numbers of a judge benchmark's scores.json that TensorBoard shows."""
    out = {"response_language_rate": summary["response_language_rate"]}
    if summary["grades"]["mean"] is not None:
        out["grade"] = summary["grades"]["mean"]
    pairwise = summary.get("pairwise")
    if pairwise and pairwise["win_rate"] is not None:
        out["win_rate"] = pairwise["win_rate"]
    return out


def write_summaries(out: Path, results: dict[str, dict]) -> None:
    """TensorBoard scalars and the per-category chart for this run."""
    try:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(out / "tb"))
        for name, summary in results.items():
            if summary.get("kind") == "judge":
                for key, value in judge_scalars(summary).items():
                    writer.add_scalar(f"eval/{name}/{key}", value, 0)
                continue
            for key in (
                "inst_level_strict_acc",
                "inst_level_loose_acc",
                "prompt_level_strict_acc",
                "prompt_level_loose_acc",
                "response_language_rate",
            ):
                writer.add_scalar(f"eval/{name}/{key}", summary[key], 0)
            for category, values in summary["per_category"].items():
                writer.add_scalar(f"eval/{name}/category/{category}", values["strict_acc"], 0)
        writer.close()
    except ImportError:
        logger.warning("tensorboard is not installed; no eval scalars written")
    run = RunScores(out.name, out, dict(results))
    series = {
        name: category_accuracies(run, name) for name in results if results[name].get("kind") != "judge"
    }
    chart = plot_categories(series, out / "categories.png", title=f"IFEval by category: {out.name}")
    if chart is not None:
        logger.info("per-category chart: %s", chart)
