"""`launch/plan.py`'s work: a recipe and a cluster in, the plan's lines out (training and generation jobs)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from data.pipeline import DRY_RUN_RECORDS, build_dataset
from data.sources import PREFERENCE_FORMATS
from data.translate.prompt import FewShotPrompt
from eval.config import EvalConfig
from eval.pairs.config import PairsConfig
from eval.translation.config import TranslateConfig
from planner.architectures import Architecture, PlanError, resolve_architecture
from planner.memory import (
    GenerationSettings,
    GiB,
    MemoryPlan,
    RunSettings,
    effective_attention,
    largest_micro_batch,
    memory_budget,
    plan_generation,
    plan_memory,
    precompute_phase_bytes,
)
from planner.runtime import CPU_RUNTIME_GIB, measure_runtime_baseline
from planner.throughput import estimate_throughput
from runtime import devices
from runtime.config import load_config, read_yaml
from runtime.model import prepare_tokenizer
from runtime.settings import ModelConfig


def settings_from_config(cfg: Any, *, job: str, world_size: int, device: str) -> RunSettings:
    """RunSettings of an SFTConfig or DPOConfig for `world_size` ranks of `device`."""
    train = cfg.train
    per_step = train.micro_batch_size * world_size
    reference = None
    if job == "dpo":
        mode = cfg.reference.mode
        reference = mode if mode != "auto" else ("precompute" if train.epochs > 1 else "live")
    return RunSettings(
        world_size=world_size,
        device=device,
        micro_batch=train.micro_batch_size,
        seq_len=train.max_seq_len,
        rows_per_sample=2 if job == "dpo" else 1,
        mixed_precision=train.mixed_precision,
        model_dtype=cfg.model.dtype,
        activation_checkpointing=train.activation_checkpointing,
        attn_implementation=cfg.model.attn_implementation,
        loss_chunk_size=getattr(train, "loss_chunk_size", None),
        grad_accum=max(1, train.global_batch_size // per_step),
        reference=reference,
        fused_optimizer=cfg.optim.fused,
        cpu_offload=train.cpu_offload,
    )


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def format_gib(value: float) -> str:
    return f"{value / GiB:8.2f} GiB"


def detect_job(raw: Mapping[str, Any]) -> str:
    """make_pairs (instruction_sources or generation.samples_per_prompt), eval (benchmarks), translate (top-level
    sources and target_lang), dpo (a reference/dpo section or preference-format sources), else sft."""
    if "instruction_sources" in raw or "samples_per_prompt" in (raw.get("generation") or {}):
        return "make_pairs"
    if "benchmarks" in raw:
        return "eval"
    if "target_lang" in raw or "sources" in raw:
        return "translate"
    if "reference" in raw or "dpo" in raw:
        return "dpo"
    sources = (raw.get("data") or {}).get("sources") or []
    if any(isinstance(src, Mapping) and src.get("format") in PREFERENCE_FORMATS for src in sources):
        return "dpo"
    return "sft"


@dataclasses.dataclass
class PlanRequest:
    """Everything `launch/plan.py` passes in."""

    config: str
    overrides: list[str] = dataclasses.field(default_factory=list)
    job: str | None = None  # sft | dpo | eval | translate | make_pairs | None (detect)
    nodes: int = 1
    gpus_per_node: int = 8
    gpu: str = "mi250x"
    gpu_memory_gib: float | None = None
    peak_tflops: float | None = None
    arch: str | None = None
    reference_arch: str | None = None
    judge_arch: str | None = (
        None  # eval with judge benchmarks: the judge's architecture (None: from its config)
    )
    mfu: float = 0.40
    margin: float = 0.10
    overhead_gib: float | None = None  # None: 2 GiB on GPU, 0 on CPU
    runtime_gib: float | None = None  # CPU runtime baseline; None: CPU_RUNTIME_GIB
    measure_runtime: bool = False
    count_data: bool = False
    max_micro_batch: int = 256
    prompt_tokens: int | None = None  # eval/translate: the longest prompt; None: an estimate from the recipe
    # the root config class of each training job ("sft", "dpo"): launch/jobs.py's JOBS (the planner does not
    # import the trainer; the generation jobs' configs it knows itself)
    configs: Mapping[str, type] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class PlanResult:
    lines: list[str]
    arch: Architecture
    settings: RunSettings | GenerationSettings
    plan: MemoryPlan  # at the recipe's settings
    budget: float
    judge_plan: MemoryPlan | None = (
        None  # eval with judge benchmarks: the judge's phase (the model freed first)
    )


def make_plan(req: PlanRequest) -> PlanResult:
    """Load the recipe, resolve the architecture and the device, and compute the plan and its printed lines."""

    if req.nodes < 1 or req.gpus_per_node < 1:
        raise PlanError("--nodes and --gpus-per-node must be >= 1")
    if not 0.0 < req.mfu <= 1.0:
        raise PlanError(f"--mfu must be in (0, 1], got {req.mfu}")
    if not 0.0 <= req.margin < 1.0:
        raise PlanError(f"--margin must be in [0, 1), got {req.margin}")
    raw = read_yaml(req.config)
    job = req.job or detect_job(raw)
    if job not in ("sft", "dpo", "eval", "translate", "make_pairs"):
        raise PlanError(f"--job must be sft, dpo, eval, translate or make_pairs, got {job!r}")
    device = _device(req)
    if job in GENERATION_JOBS:
        return _make_generation_plan(req, job, device)
    if job not in req.configs:
        raise PlanError(f"no config class for the {job} job (PlanRequest.configs: launch/jobs.py's JOBS)")
    cfg = load_config(req.configs[job], req.config, req.overrides)
    world = req.nodes * req.gpus_per_node
    arch, source = resolve_architecture(cfg.model, arch=req.arch)
    settings = settings_from_config(cfg, job=job, world_size=world, device=device.name)
    ref_arch = None
    if job == "dpo" and (req.reference_arch or cfg.reference.path):
        ref_model = ModelConfig(**{**cfg.model.__dict__, "path": cfg.reference.path, "init_config": None})
        ref_arch, _ = resolve_architecture(ref_model, arch=req.reference_arch or req.arch)

    on_cpu = device.name == "cpu"
    memory_gib, overhead, budget = _budget(req, device)
    runtime = None
    if on_cpu:
        if req.measure_runtime:
            tokenizer = cfg.model.tokenizer or cfg.model.path
            runtime = float(
                measure_runtime_baseline(
                    model_type=arch.model_type, tokenizer=tokenizer, tensorboard=cfg.logging.tensorboard
                )
            )
        else:
            runtime = (req.runtime_gib if req.runtime_gib is not None else CPU_RUNTIME_GIB) * GiB

    plan = plan_memory(arch, settings, reference_arch=ref_arch, runtime_bytes=runtime)
    other = dataclasses.replace(settings, activation_checkpointing=not settings.activation_checkpointing)
    plan_other = plan_memory(arch, other, reference_arch=ref_arch, runtime_bytes=runtime)
    largest = {
        ac: largest_micro_batch(
            arch,
            dataclasses.replace(settings, activation_checkpointing=ac),
            budget,
            reference_arch=ref_arch,
            runtime_bytes=runtime,
            limit=req.max_micro_batch,
        )
        for ac in (False, True)
    }

    # data (optional)
    num_examples = None
    mean_tokens = None
    data_note = None
    if req.count_data:
        num_examples, mean_tokens, data_note = _count_data(cfg, job)

    peak = req.peak_tflops * 1e12 if req.peak_tflops is not None else devices.peak_flops(device.name)
    throughput = None
    if peak is not None:
        throughput = estimate_throughput(
            arch,
            settings,
            peak_flops=peak,
            mfu=req.mfu,
            global_batch=cfg.train.global_batch_size,
            tokens_per_row=mean_tokens if mean_tokens is not None else settings.seq_len,
            num_examples=num_examples,
            reference_arch=ref_arch,
        )

    lines = _format(
        req=req,
        job=job,
        cfg=cfg,
        arch=arch,
        source=source,
        ref_arch=ref_arch,
        device=device,
        memory_gib=memory_gib,
        overhead=overhead,
        budget=budget,
        plan=plan,
        plan_other=plan_other,
        largest=largest,
        throughput=throughput,
        peak_flops=peak,
        num_examples=num_examples,
        mean_tokens=mean_tokens,
        data_note=data_note,
    )
    return PlanResult(lines, arch, settings, plan, budget)


def _device(req: PlanRequest) -> Any:
    try:
        return devices.lookup(req.gpu)
    except ValueError:
        if req.gpu_memory_gib is None or req.peak_tflops is None:
            raise
        return devices.Device(req.gpu, req.gpu_memory_gib, req.peak_tflops, "given on the command line")


def _budget(req: PlanRequest, device: Any) -> tuple[float, float, float]:
    """(device memory GiB, framework overhead GiB, usable bytes)."""
    on_cpu = device.name == "cpu"
    if req.gpu_memory_gib is not None:
        memory_gib = req.gpu_memory_gib
    elif on_cpu:
        memory_gib = devices.host_memory_gib() / req.gpus_per_node
    else:
        memory_gib = float(device.memory_gib or 0.0)
    overhead = req.overhead_gib if req.overhead_gib is not None else (0.0 if on_cpu else 2.0)
    return memory_gib, overhead, memory_budget(memory_gib, margin=req.margin, overhead_gib=overhead)


# Characters per token assumed for prompt lengths the planner cannot tokenize (conservative for English and
# Finnish with a 50k-130k BPE vocabulary, which average 3-4.5).
CHARS_PER_TOKEN = 2.5
GENERATION_JOBS = {"eval": EvalConfig, "translate": TranslateConfig, "make_pairs": PairsConfig}


def generation_settings_from_config(
    cfg: Any, *, job: str, world_size: int, device: str, prompt_tokens: int | None = None
) -> GenerationSettings:
    """GenerationSettings of an EvalConfig, TranslateConfig or PairsConfig. Prompt lengths, unless given: eval 1,024
    tokens (IFEval's longest prompts are far shorter; with judge benchmarks at least two questions and a first
    answer); make_pairs, its max_prompt_tokens (longer prompts are left
    out), with batches of prompts_per_batch x samples_per_prompt sequences; translate, the few-shot prefix and the
    longest segment (`segments.max_chars`) at CHARS_PER_TOKEN, and as new tokens the segment budget
    (length_factor x the segment + extra_new_tokens, at most max_new_tokens)."""
    prefix = 0
    new = cfg.generation.max_new_tokens
    batch = cfg.generation.batch_size
    if job == "make_pairs":
        batch = cfg.prompts_per_batch * cfg.generation.samples_per_prompt
        default_prompt = cfg.max_prompt_tokens
    elif job == "translate":
        prompt = FewShotPrompt.from_config(
            cfg.prompt, source_lang=cfg.source_lang, target_lang=cfg.target_lang
        )
        segment = math.ceil(cfg.segments.max_chars / CHARS_PER_TOKEN)
        prefix = math.ceil(len(prompt.prefix) / CHARS_PER_TOKEN) if cfg.prompt.cache_prefix else 0
        own = segment + math.ceil(len(prompt.suffix("")) / CHARS_PER_TOKEN)
        if not cfg.prompt.cache_prefix:
            own += math.ceil(len(prompt.prefix) / CHARS_PER_TOKEN)
        new = min(new, math.ceil(cfg.segments.length_factor * segment) + cfg.segments.extra_new_tokens)
        default_prompt = own
    else:
        default_prompt = 1024
        if any(getattr(bench, "kind", "ifeval") == "judge" for bench in cfg.benchmarks):
            # the second turn of an open-ended question: both questions and the model's first answer
            default_prompt = max(default_prompt, 2 * 128 + new)
    return GenerationSettings(
        world_size=world_size,
        device=device,
        sharding=cfg.sharding,
        batch_size=batch,
        prompt_tokens=prompt_tokens or default_prompt,
        new_tokens=new,
        prefix_tokens=prefix,
        model_dtype=cfg.model.dtype,
        attn_implementation=cfg.model.attn_implementation,
    )


def _make_generation_plan(req: PlanRequest, job: str, device: Any) -> PlanResult:
    cfg = load_config(GENERATION_JOBS[job], req.config, req.overrides)
    world = req.nodes * req.gpus_per_node
    arch, source = resolve_architecture(cfg.model, arch=req.arch)
    settings = generation_settings_from_config(
        cfg, job=job, world_size=world, device=device.name, prompt_tokens=req.prompt_tokens
    )
    memory_gib, overhead, budget = _budget(req, device)
    runtime = (
        (req.runtime_gib if req.runtime_gib is not None else CPU_RUNTIME_GIB) * GiB
        if device.name == "cpu"
        else None
    )
    plan = plan_generation(arch, settings, runtime_bytes=runtime)
    s = settings
    lines = [
        f"plan: {req.config} ({job}), {world} ranks = {req.nodes} node(s) x {req.gpus_per_node} {device.name}",
        f"model: {arch.model_type} from {source}: {arch.total_params() / 1e9:.3f}B parameters, {arch.layers} "
        f"layers, hidden {arch.hidden}, heads {arch.heads} (kv {arch.kv_heads}), vocab {arch.vocab}",
        f"run: sharding {s.sharding}, batch {s.batch_size}, prompt {s.prompt_tokens} tokens"
        + (f" after a cached prefix of {s.prefix_tokens}" if s.prefix_tokens else "")
        + f", up to {s.new_tokens} new tokens; {'bf16' if s.compute_bytes == 2 else 'fp32'} compute; attention "
        f"{effective_attention(arch.model_type, s.attn_implementation)}",
        f"device: {device.name}, {memory_gib:.1f} GiB; budget {budget / GiB:.1f} GiB ({req.margin:.0%} margin, "
        f"{overhead:.1f} GiB framework overhead)",
        f"per-device memory at batch {s.batch_size} ({'RSS of one process' if s.on_cpu else 'allocated'}):",
    ]
    for name, value in plan.components.items():
        lines.append(f"  {name:<48s}{format_gib(value)}")
    if s.on_cpu:
        lines.append(f"  {'runtime (python, torch, transformers)':<48s}{format_gib(plan.runtime)}")
    mark = "fits" if plan.peak <= budget else "does NOT fit"
    lines.append(f"  {'peak (recipe)':<48s}{format_gib(plan.peak)}  at the {plan.peak_moment}; {mark}")
    if plan.peak > budget and s.sharding == "replicate":
        sharded = plan_generation(arch, dataclasses.replace(s, sharding="fsdp"), runtime_bytes=runtime)
        lines.append(
            f"  {'peak with sharding: fsdp':<48s}{format_gib(sharded.peak)}; "
            f"{'fits' if sharded.peak <= budget else 'does NOT fit'}"
        )
    largest = 0
    for batch in range(1, req.max_micro_batch + 1):
        if (
            plan_generation(arch, dataclasses.replace(s, batch_size=batch), runtime_bytes=runtime).peak
            > budget
        ):
            break
        largest = batch
    lines.append(f"largest batch that fits (1..{req.max_micro_batch}): {largest}")
    judge_plan = None
    if job == "eval" and any(bench.kind == "judge" for bench in cfg.benchmarks):
        judge_plan, judge_lines = _judge_phase(
            cfg, req, world=world, device=device, budget=budget, runtime=runtime
        )
        lines += judge_lines
    return PlanResult(lines, arch, settings, plan, budget, judge_plan)


def judge_prompt_tokens(cfg: Any, *, turns: int = 2) -> int:
    """The judge's longest prompt, estimated: the instructions (256 tokens) and, for a pairwise comparison of the
    last of `turns` turns, two conversations of `turns` questions (128 tokens each) and answers (up to
    generation.max_new_tokens each)."""
    return 256 + 2 * turns * (128 + cfg.generation.max_new_tokens)


def _judge_phase(cfg: Any, req: PlanRequest, *, world: int, device: Any, budget: float,
                 runtime: float | None) -> tuple[MemoryPlan, list[str]]:  # fmt: skip
    """The judge's generation, planned as its own phase: the evaluated model is freed before it loads."""
    arch, source = resolve_architecture(cfg.judge.model, arch=req.judge_arch)
    judge = cfg.judge
    settings = GenerationSettings(
        world_size=world,
        device=device.name,
        sharding=judge.sharding,
        batch_size=judge.generation.batch_size,
        prompt_tokens=judge_prompt_tokens(cfg),
        new_tokens=judge.generation.max_new_tokens,
        model_dtype=judge.model.dtype,
        attn_implementation=judge.model.attn_implementation,
    )
    plan = plan_generation(arch, settings, runtime_bytes=runtime)
    lines = [
        "judge (loaded after the evaluated model is freed):",
        f"  {arch.model_type} from {source}: {arch.total_params() / 1e9:.3f}B parameters, {arch.layers} layers, "
        f"hidden {arch.hidden}, heads {arch.heads} (kv {arch.kv_heads}); sharding {settings.sharding}, batch "
        f"{settings.batch_size}, prompt {settings.prompt_tokens} tokens (a pairwise turn 2), up to "
        f"{settings.new_tokens} new tokens",
    ]
    for name, value in plan.components.items():
        lines.append(f"  {name:<48s}{format_gib(value)}")
    mark = "fits" if plan.peak <= budget else "does NOT fit"
    lines.append(f"  {'peak (judge)':<48s}{format_gib(plan.peak)}  at the {plan.peak_moment}; {mark}")
    return plan, lines


def _count_data(cfg: Any, job: str) -> tuple[int | None, float | None, str]:
    """(examples, mean tokens per row, note) from the recipe's data via the data pipeline (tokenizer needed)."""
    try:
        tokenizer, _template, _added = prepare_tokenizer(cfg.model, cfg.data.template)
        bundle = build_dataset(
            cfg.data,
            tokenizer=tokenizer,
            max_seq_len=cfg.train.max_seq_len,
            expect="preference" if job == "dpo" else "sft",
            tokenize_at_most=DRY_RUN_RECORDS,
        )
    except (ValueError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, None, f"data not counted: {reason}"
    lengths = bundle.lengths()
    if not len(lengths):
        return 0, None, "data: no examples"
    mean = float(lengths.mean())
    num = bundle.estimated_examples()
    sample = (
        f" (estimated from a sample of {len(lengths)} of {bundle.sampled_from} records)"
        if bundle.sampled_from is not None
        else ""
    )
    return (
        num,
        mean,
        f"data: {num} examples{sample}, mean {mean:.0f} tokens per row (max {int(lengths.max())})",
    )


def _format(**k: Any) -> list[str]:
    req, job, cfg, arch, s = k["req"], k["job"], k["cfg"], k["arch"], k["plan"].settings
    plan, plan_other, device = k["plan"], k["plan_other"], k["device"]
    gib = format_gib
    lines = [
        f"plan: {req.config} ({job}), {s.world_size} ranks = {req.nodes} node(s) x {req.gpus_per_node} {device.name}"
    ]
    n = arch.total_params()
    lines.append(
        f"model: {arch.model_type} from {k['source']}: {n / 1e9:.3f}B parameters ({arch.layers} blocks of "
        f"{arch.block_params() / 1e6:.2f}M, root {arch.root_params() / 1e6:.1f}M), hidden {arch.hidden}, heads "
        f"{arch.heads} (kv {arch.kv_heads}), intermediate {arch.intermediate}, vocab {arch.vocab}, "
        f"{'tied' if arch.tied else 'untied'} embeddings"
    )
    if arch.approximate:
        lines.append(f"note: model_type {arch.model_type!r} is counted as a Llama block (approximate)")
    if k["ref_arch"] is not None:
        ref = k["ref_arch"]
        lines.append(f"reference: {ref.model_type}, {ref.total_params() / 1e9:.3f}B parameters")
    attn = effective_attention(arch.model_type, s.attn_implementation)
    precision = "fp32" if s.compute_bytes == 4 else "bf16"
    master = "fp32" if s.param_bytes == 4 else "bf16"
    per_step = s.micro_batch * s.world_size
    gb = cfg.train.global_batch_size
    valid = gb % per_step == 0
    lines.append(
        f"run: micro batch {s.micro_batch} x {s.rows_per_sample} row(s) x {s.seq_len} tokens, global batch {gb}"
        + (
            f", gradient accumulation {gb // per_step}"
            if valid
            else f" (not a multiple of {per_step}: invalid)"
        )
        + f"; {precision} compute, {master} masters; attention {attn}; loss "
        + ("full logits" if s.loss_chunk_size is None else f"in chunks of {s.loss_chunk_size} tokens")
        + (f"; reference {s.reference}" if s.reference else "")
        + ("; CPU offload" if s.cpu_offload else "")
    )
    peak_flops = k["peak_flops"]
    flops_text = f"{peak_flops / 1e12:.1f} TFLOP/s peak bf16" if peak_flops else "no peak FLOP/s figure"
    lines.append(
        f"device: {device.name}, {k['memory_gib']:.1f} GiB{' host RAM per process' if s.on_cpu else ''}, "
        f"{flops_text}; budget {k['budget'] / GiB:.1f} GiB ({req.margin:.0%} margin, "
        f"{k['overhead']:.1f} GiB framework overhead)"
    )
    lines.append(
        f"per-device memory at micro batch {s.micro_batch} ({'RSS of one process' if s.on_cpu else 'allocated'}):"
    )
    for name, value in plan.components.items():
        if name.startswith("activations"):
            continue
        lines.append(f"  {name:<48s}{gib(value)}")
    with_ac, without_ac = (plan, plan_other) if s.activation_checkpointing else (plan_other, plan)
    lines.append(
        f"  {'activations, no checkpointing':<48s}{gib(plan.components['activations (no checkpointing)'])}"
    )
    lines.append(
        f"  {'activations, checkpointing':<48s}{gib(plan.components['activations (checkpointing)'])}"
    )
    if s.on_cpu:
        lines.append(f"  {'runtime (python, torch, transformers)':<48s}{gib(plan.runtime)}")
    budget = k["budget"]
    for label, p in (("peak, no checkpointing", without_ac), ("peak, checkpointing", with_ac)):
        mark = "fits" if p.peak <= budget else "does NOT fit"
        chosen = " (recipe)" if p is plan else ""
        lines.append(f"  {label + chosen:<48s}{gib(p.peak)}  at {p.peak_moment}; {mark}")
    if s.reference == "precompute":
        pre = precompute_phase_bytes(arch, s, k["ref_arch"]) + plan.runtime
        lines.append(f"  {'reference precompute pass (before training)':<48s}{gib(pre)}")
    largest = k["largest"]
    quota = gb // s.world_size if gb % s.world_size == 0 else None
    divisors = ""
    if quota:
        fit_div = {
            ac: max((b for b in range(1, largest[ac] + 1) if quota % b == 0), default=0) for ac in largest
        }
        divisors = f"; dividing global batch / ranks = {quota}: {fit_div[False]} without, {fit_div[True]} with checkpointing"
    lines.append(
        f"largest micro batch that fits (1..{req.max_micro_batch}): {largest[False]} without checkpointing, "
        f"{largest[True]} with{divisors}"
    )
    if k["data_note"]:
        lines.append(k["data_note"])
    t = k["throughput"]
    if t is None:
        lines.append("throughput: no peak FLOP/s for this device (give --peak-tflops)")
    else:
        basis = "mean tokens per row" if k["mean_tokens"] is not None else "every row at max_seq_len"
        text = (
            f"throughput at MFU {req.mfu:.2f}: {t.tokens_per_second_per_device:,.0f} tokens/s/device "
            f"({t.flops_per_token / 1e9:.1f} GFLOP/token), {t.tokens_per_second_per_device * s.world_size:,.0f} "
            f"tokens/s in all, {t.steps_per_second:.4g} steps/s = {1 / t.steps_per_second:.3g} s/step "
            f"({t.tokens_per_step:,.0f} tokens/step, {basis})"
        )
        if t.seconds_per_epoch is not None:
            text += f"; {_duration(t.seconds_per_epoch)} per epoch ({k['num_examples'] // gb} steps)"
        lines.append(text)
    return lines
