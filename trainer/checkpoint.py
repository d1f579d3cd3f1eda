"""Sharded checkpoints (torch.distributed.checkpoint) for exact resume, and the Hugging Face export.

Layout: OUTPUT_DIR/checkpoints/step_N/ holds the DCP shards of model and optimizer, `trainer_state.json`
(step, epoch, sampler position, chat template, data fingerprint) and `rng_rank{R}.safetensors`. A checkpoint is written under
`.step_N.tmp` and renamed when every rank has finished, so a directory named `step_N` is always complete.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import random
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from data.errors import ConfigError, SisuError
from data.files import follow_umask
from runtime.distributed import barrier, rank
from runtime.model import DTYPES
from runtime.parallel import mixed_precision_policy

logger = logging.getLogger("sisu")
STEP_DIR = re.compile(r"^step_(\d+)$")


# --- what is read back holds only data ------------------------------------------------------------------------
#
# Checkpoints sit in shared project directories, where a planted file would run as whoever resumes if it were
# unpickled. The RNG state is safetensors (tensors) plus JSON; DCP's own metadata (a pickle) is checked against
# the classes DCP writes before torch reads it, and its non-tensor items are loaded with weights_only=True.


def save_rng_state(path: Path) -> None:
    """This process's RNG states (python, numpy, torch, CUDA) as safetensors with JSON metadata."""
    from safetensors.torch import save_file

    version, words, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state()
    metadata = {
        "python": json.dumps([version, list(words), gauss]),
        "numpy": json.dumps([name, keys.tolist(), int(pos), int(has_gauss), float(cached)]),
    }
    save_file(tensors, str(path), metadata=metadata)
    follow_umask(path)  # safetensors writes 0600


def load_rng_state(path: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    version, words, gauss = json.loads(metadata["python"])
    random.setstate((version, tuple(words), gauss))
    name, keys, pos, has_gauss, cached = json.loads(metadata["numpy"])
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["cuda"])


def _dcp_metadata_classes() -> set[tuple[str, str]]:
    from torch.distributed.checkpoint import metadata

    names = {(metadata.__name__, name) for name, value in vars(metadata).items() if isinstance(value, type)}
    return names | {
        ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
        ("torch", "Size"),
        ("torch.serialization", "_get_layout"),
        ("pathlib", "PosixPath"),
        ("pathlib", "PurePosixPath"),
        ("pathlib", "WindowsPath"),
        ("pathlib", "PureWindowsPath"),
        ("collections", "OrderedDict"),
    }


class _MetadataUnpickler(pickle.Unpickler):
    allowed: set[tuple[str, str]] = set()

    def find_class(self, module: str, name: str) -> Any:
        is_dtype = module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)
        if (module, name) not in self.allowed and not is_dtype:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which DCP metadata never holds")
        return super().find_class(module, name)


def check_dcp_metadata(path: Path) -> None:
    """Refuse a checkpoint whose DCP metadata refers to anything but DCP's own metadata classes (a planted pickle
    would run code when torch unpickles it); checked without running any of it."""
    _MetadataUnpickler.allowed = _MetadataUnpickler.allowed or _dcp_metadata_classes()
    try:
        with (path / ".metadata").open("rb") as handle:
            _MetadataUnpickler(handle).load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise SisuError(
            f"{path / '.metadata'}: not a checkpoint's metadata sisu will load ({exc})"
        ) from None


class _DataOnlyLoadPlanner(DefaultLoadPlanner):
    """DCP's planner, but a non-tensor item is first loaded with weights_only=True (plain data only)."""

    def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
        data = value.getvalue()
        torch.load(io.BytesIO(data), weights_only=True)  # raises on anything that is not plain data
        super().load_bytes(read_item, io.BytesIO(data))


def list_checkpoints(root: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints under `root`, oldest first; warns about incomplete (temporary) ones."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = STEP_DIR.match(entry.name)
        if match and (entry / "trainer_state.json").is_file():
            found.append((int(match.group(1)), entry))
        elif entry.name.endswith(".tmp"):
            logger.warning("ignoring incomplete checkpoint %s (a run stopped while writing it)", entry)
    return sorted(found)


def save_checkpoint(
    root: str | os.PathLike,
    *,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    keep: int,
) -> Path:
    """Write checkpoint `step_{step}` collectively (all ranks call this), then prune to the newest `keep`."""
    root = Path(root)
    final = root / f"step_{step}"
    tmp = root / f".step_{step}.tmp"
    if rank() == 0:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    barrier()
    state = {
        "model": get_model_state_dict(model),
        "optim": get_optimizer_state_dict(model, optimizer),
    }
    dcp.save(state, checkpoint_id=str(tmp))
    save_rng_state(tmp / f"rng_rank{rank()}.safetensors")
    barrier()
    if rank() == 0:
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2), encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for _step, old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def read_trainer_state(path: str | os.PathLike) -> dict[str, Any]:
    """The `trainer_state.json` of checkpoint `path` (one-line error when it is not a complete checkpoint)."""
    state_file = Path(path) / "trainer_state.json"
    if not state_file.is_file():
        raise SisuError(f"{path}: not a complete sisu checkpoint (trainer_state.json missing)")
    return json.loads(state_file.read_text(encoding="utf-8"))


def load_checkpoint(
    path: str | os.PathLike, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None
) -> dict[str, Any]:
    """Restore model, optimizer and this rank's RNG from `path`; returns the trainer state."""
    path = Path(path)
    trainer_state = read_trainer_state(path)
    state: dict[str, Any] = {"model": get_model_state_dict(model)}
    if optimizer is not None:
        state["optim"] = get_optimizer_state_dict(model, optimizer)
    rng_file = path / f"rng_rank{rank()}.safetensors"
    if not rng_file.is_file():
        old = (
            " (only the pickled rng_rank*.pt of an older sisu, which is not loaded)"
            if any(path.glob("*.pt"))
            else ""
        )
        raise SisuError(f"{path}: no RNG state for rank {rank()}{old}; resume=none starts over")
    check_dcp_metadata(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        dcp.load(state, checkpoint_id=str(path), planner=_DataOnlyLoadPlanner())
    set_model_state_dict(model, state["model"])
    if optimizer is not None:
        set_optimizer_state_dict(model, optimizer, state["optim"])
    load_rng_state(rng_file)
    return trainer_state


def _clean_key(key: str) -> str:
    for wrapper in ("_checkpoint_wrapped_module.", "_orig_mod.", "_fsdp_wrapped_module."):
        key = key.replace(wrapper, "")
    return key


def _parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?B)\s*", text.upper())
    if not match:
        raise ConfigError(f"checkpoint.max_shard_size {text!r}: expected e.g. 500MB or 5GB")
    scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9}[match.group(2)]
    return int(float(match.group(1)) * scale)


def export_hf(
    model: torch.nn.Module,
    out_dir: str | os.PathLike,
    *,
    tokenizer: Any,
    max_shard_size: str = "5GB",
    dtype: torch.dtype | None = None,
    chat_template: str | None = None,
    end_of_turn: str | None = None,
) -> Path | None:
    """Write a Hugging Face directory (safetensors shards, config, generation config, tokenizer).

    Parameters are gathered one at a time (every rank takes part) and rank 0 streams them into shards of at
    most `max_shard_size`, so no process ever holds the full model twice. Tied output embeddings are stored once.
    What users serve from it: weights in `dtype` (the config says so), `use_cache: true`, bos/eos/pad ids that
    are the tokenizer's, the tokenizer with the `chat_template` the run trained with, and a generation config
    whose eos ids include the template's `end_of_turn` token, so generation stops at the end of a turn.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    main = rank() == 0
    tmp = out.parent / f".{out.name}.tmp"
    if main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    limit = _parse_size(max_shard_size)
    tied = getattr(model.config, "tie_word_embeddings", False)
    options = StateDictOptions(full_state_dict=False)
    sharded = get_model_state_dict(model, options=options)
    shards: list[dict[str, torch.Tensor]] = [{}]
    sizes = [0]
    for key, value in sharded.items():
        name = _clean_key(key)
        full = value.full_tensor() if hasattr(value, "full_tensor") else value
        if not main or (tied and name == "lm_head.weight"):
            continue
        tensor = full.detach().to("cpu", dtype=dtype or full.dtype).contiguous()
        nbytes = tensor.numel() * tensor.element_size()
        if sizes[-1] and sizes[-1] + nbytes > limit:
            _flush(shards, tmp, save_file)
            shards.append({})
            sizes.append(0)
        shards[-1][name] = tensor
        sizes[-1] += nbytes
    if main:
        _flush(shards, tmp, save_file, final=True, total_size=sum(sizes))
        exported_dtype = dtype or next(iter(sharded.values())).dtype
        config, generation = serving_configs(model, tokenizer, dtype=exported_dtype, end_of_turn=end_of_turn)
        config.save_pretrained(tmp)
        generation.save_pretrained(tmp)
        previous = getattr(tokenizer, "chat_template", None)
        if chat_template is not None:
            tokenizer.chat_template = chat_template
        try:
            tokenizer.save_pretrained(tmp)
        finally:
            tokenizer.chat_template = previous
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    barrier()
    return out if main else None


def serving_configs(
    model: torch.nn.Module, tokenizer: Any, *, dtype: torch.dtype, end_of_turn: str | None
) -> tuple[Any, Any]:
    """Copies of the model's config and generation config as they should be served (see export_hf)."""
    import copy

    from transformers import GenerationConfig

    config = copy.deepcopy(model.config)
    config.use_cache = True
    config.dtype = dtype
    config.vocab_size = model.get_input_embeddings().num_embeddings
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(config, name, getattr(tokenizer, name, None))
    existing = getattr(model, "generation_config", None)
    generation = (
        copy.deepcopy(existing) if existing is not None else GenerationConfig.from_model_config(config)
    )
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if end_of_turn:
        ids = tokenizer(end_of_turn, add_special_tokens=False)["input_ids"]
        if len(ids) == 1 and ids[0] not in eos:
            eos.append(ids[0])
    generation.eos_token_id = eos if len(eos) != 1 else eos[0]
    generation.pad_token_id = tokenizer.pad_token_id
    generation.bos_token_id = tokenizer.bos_token_id
    return config, generation


def _flush(
    shards: list[dict], tmp: Path, save_file: Any, *, final: bool = False, total_size: int = 0
) -> None:
    """Write the newest shard under a provisional name; on `final`, rename all and write the index."""
    index = len(shards)
    if shards[-1]:
        save_file(shards[-1], str(tmp / f"part-{index:05d}.safetensors"), metadata={"format": "pt"})
        follow_umask(tmp / f"part-{index:05d}.safetensors")  # safetensors writes 0600
        shards[-1] = {name: None for name in shards[-1]}  # keep the names, drop the tensors
    if not final:
        return
    count = len(shards)
    if count == 1:
        os.replace(tmp / "part-00001.safetensors", tmp / "model.safetensors")
        return
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        name = f"model-{i:05d}-of-{count:05d}.safetensors"
        os.replace(tmp / f"part-{i:05d}.safetensors", tmp / name)
        weight_map.update({key: name for key in shard})
    index_doc = {"metadata": {"total_size": total_size}, "weight_map": weight_map}
    (tmp / "model.safetensors.index.json").write_text(json.dumps(index_doc, indent=2), encoding="utf-8")


def export_dtype(cfg: Any, device: torch.device) -> torch.dtype:
    """`checkpoint.export_dtype`; auto = the compute dtype (bf16 under mixed precision, else the stored dtype)."""
    if cfg.checkpoint.export_dtype != "auto":
        return DTYPES[cfg.checkpoint.export_dtype]
    policy = mixed_precision_policy(cfg.train.mixed_precision, device)
    if policy is not None:
        return policy.param_dtype
    return DTYPES.get(cfg.model.dtype, torch.float32)


def check_same_template(saved: dict[str, Any], current: dict[str, Any], *, path: Path) -> None:
    """Refuse to resume a checkpoint trained with another chat template or other added tokens."""
    before = saved.get("chat_template")
    if before is None:  # a checkpoint written before sisu recorded the template
        return
    for key, what in (("source", "chat template"), ("added_tokens", "set of tokens added for the template")):
        if before.get(key) != current.get(key):
            raise SisuError(
                f"{path} was trained with a different {what} ({before.get('name')!r}, end of turn "
                f"{before.get('end_of_turn')!r}) than this run resolves ({current.get('name')!r}); set "
                "data.template (and model.tokenizer) as in that run, or resume=none to start over"
            )


def check_same_run(saved: dict[str, Any], *, data: dict[str, Any], world_size: int, path: Path) -> None:
    """Refuse to resume when the world size or the data changed since the checkpoint: the run would not continue
    the step sequence it started (other examples per step, other ranks' RNG), so it would not be exact."""
    before = saved.get("world_size")
    if before is not None and before != world_size:
        raise SisuError(
            f"{path} was written by {before} ranks and this run has {world_size}: resume with {before} ranks "
            "(the same nodes x GPUs), or resume=none to start over"
        )
    recorded = saved.get("data")
    if recorded is None:  # a checkpoint written before sisu recorded the data
        return
    labels = {
        "sources": "data.sources",
        "record_counts": "the records per source",
        "examples": "the number of examples",
        "tokenized": "the tokenized data (records, tokenizer, template or data settings)",
        "sampler": "the sampler (seed, shuffle, group_by_length, global batch size)",
    }
    changed = [label for key, label in labels.items() if recorded.get(key) != data.get(key)]
    if changed:
        detail = ""
        if "record_counts" in recorded and recorded["record_counts"] != data["record_counts"]:
            detail = f" (records per source {recorded['record_counts']} -> {data['record_counts']})"
        raise SisuError(
            f"{path} was written for other data: {', '.join(changed)} changed{detail}; restore the data and "
            "settings of that run, or resume=none to start over"
        )
