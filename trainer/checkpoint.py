"""Sharded checkpoints (torch.distributed.checkpoint) for exact resume, and the Hugging Face export.

Layout: OUTPUT_DIR/checkpoints/step_N/ holds the DCP shards of model and optimizer, `trainer_state.json`
(step, epoch, sampler position, chat template, data fingerprint) and `rng_rank{R}.safetensors`. A checkpoint is written under
`.step_N.tmp` and renamed when every rank has finished, so a directory named `step_N` is always complete; its
`checksums.json` (trainer/integrity.py) is verified before it is resumed. A write that fails on any rank (a full
disk, a quota) stops every rank with one line and leaves the checkpoints before it as they were.
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
from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.metadata import StorageMeta
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from data.errors import ConfigError, SisuError
from data.files import follow_umask
from runtime.distributed import all_gather_objects, barrier, rank, world_size
from runtime.model import DTYPES
from runtime.parallel import mixed_precision_policy
from trainer import integrity

logger = logging.getLogger("sisu")
STEP_DIR = re.compile(r"^step_(\d+)$")


# --- what is read back holds only data ------------------------------------------------------------------------
#
# Checkpoints sit in shared project directories, where a planted file would run as whoever resumes if it were
# unpickled. The RNG state is safetensors (tensors) plus JSON; DCP's own metadata (a pickle) is checked against
# the classes DCP writes before torch reads it, and its non-tensor items are loaded with weights_only=True.


def save_safetensors(tensors: dict[str, torch.Tensor], path: Path, *, metadata: dict[str, str]) -> None:
    """safetensors' save_file, with the umask's file mode and a failed write as the OSError it is."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    try:
        save_file(tensors, str(path), metadata=metadata)
    except SafetensorError as exc:  # safetensors reports the OS error in its message only
        code = re.search(r"os error (\d+)", str(exc))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from exc
    follow_umask(path)  # safetensors writes 0600


def save_rng_state(path: Path) -> None:
    """This process's RNG states (python, numpy, torch, CUDA) as safetensors with JSON metadata."""
    version, words, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state()
    metadata = {
        "python": json.dumps([version, list(words), gauss]),
        "numpy": json.dumps([name, keys.tolist(), int(pos), int(has_gauss), float(cached)]),
    }
    save_safetensors(tensors, path, metadata=metadata)


def load_rng_state(data: bytes) -> None:
    """Restore the RNG states saved by save_rng_state from the file's (checked) bytes."""
    tensors, metadata = integrity.safetensors_from_bytes(data)
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


def parse_dcp_metadata(data: bytes, *, path: Path) -> Any:
    """DCP's metadata from the bytes of `.metadata`, refusing anything but DCP's own metadata classes (a planted
    pickle would run code if it were unpickled as torch does)."""
    _MetadataUnpickler.allowed = _MetadataUnpickler.allowed or _dcp_metadata_classes()
    try:
        return _MetadataUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError) as exc:
        raise SisuError(f"{path / '.metadata'}: not a checkpoint's metadata sisu will load ({exc})") from None


class _CheckedMetadataReader(FileSystemReader):
    """DCP's file reader, handed the metadata parsed from the checked bytes: it never opens `.metadata` again,
    so the file cannot be swapped between the check and the load."""

    def __init__(self, path: Path, metadata: Any) -> None:
        super().__init__(str(path))
        self._checked_metadata = metadata

    def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
        metadata = self._checked_metadata
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class _DataOnlyLoadPlanner(DefaultLoadPlanner):
    """DCP's planner, but a non-tensor item is first loaded with weights_only=True (plain data only)."""

    def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
        data = value.getvalue()
        torch.load(io.BytesIO(data), weights_only=True)  # raises on anything that is not plain data
        super().load_bytes(read_item, io.BytesIO(data))


def list_checkpoints(root: str | os.PathLike, *, warn: bool = True) -> list[tuple[int, Path]]:
    """Complete checkpoints under `root`, oldest first; warns about incomplete (temporary) ones."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = STEP_DIR.match(entry.name)
        if match and entry.is_dir():  # renamed into place complete: damage is found when it is verified
            found.append((int(match.group(1)), entry))
        elif warn and entry.name.endswith(".tmp"):
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
    """Write checkpoint `step_{step}` collectively (all ranks call this), then prune to the newest `keep`.

    A write that fails on any rank (OSError: a full disk, a quota, a lost mount) stops every rank with one line;
    the temporary directory is removed and the checkpoints before it are untouched.
    """
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
    try:
        dcp.save(state, storage_writer=FileSystemWriter(str(tmp)))
    except CheckpointException as exc:  # raised on every rank alike when any rank's write failed
        _refuse_write(tmp, final, _write_failure(exc))
    problem, digests = None, {}
    try:
        save_rng_state(tmp / f"rng_rank{rank()}.safetensors")
        digests = integrity.digest_own_files(tmp, rank=rank())
    except OSError as exc:
        problem = f"rank {rank()}: {exc}"
    problem, digests = _agree(problem, digests)
    if problem:
        _refuse_write(tmp, final, problem)
    if rank() == 0:
        try:
            state_bytes = json.dumps(trainer_state, indent=2).encode("utf-8")
            (tmp / "trainer_state.json").write_bytes(state_bytes)
            digests["trainer_state.json"] = integrity.digest_bytes(state_bytes)
            integrity.write_manifest(tmp, digests)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except OSError as exc:
            problem = f"rank 0: {exc}"
    problem, _ = _agree(problem, {})
    if problem:
        _refuse_write(tmp, final, problem)
    if rank() == 0:
        for _step, old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def _agree(problem: str | None, digests: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """Every rank's problem (the first by rank) and every rank's digests, on every rank."""
    gathered = all_gather_objects((problem, digests))
    problems = [p for p, _ in gathered if p]
    merged = {name: digest for _, part in gathered for name, digest in part.items()}
    return (problems[0] if problems else None), merged


def _write_failure(exc: CheckpointException) -> str:
    """The failed write behind a DCP save's exception, as `rank R: what`; anything else is re-raised (a bug)."""
    for failed_rank, (error, _trace) in sorted(exc.failures.items()):
        if isinstance(error, OSError):
            return f"rank {failed_rank}: {error}"
        if isinstance(error, RuntimeError) and _ZIP_WRITE_FAILED.search(str(error)):
            return f"rank {failed_rank}: a shard could not be written in full (torch: {str(error).splitlines()[0]})"
    raise exc


# torch.save reports a failed write of its zip container as a RuntimeError of its C++ writer, not an OSError
_ZIP_WRITE_FAILED = re.compile(
    r"inline_container\.cc.*(unexpected pos|file write failed|failed writing)", re.S
)


def _refuse_write(tmp: Path, final: Path, problem: str) -> None:
    """Remove the half-written checkpoint and stop with one line (every rank calls this with the same problem)."""
    if rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    before = [p.name for _, p in list_checkpoints(final.parent, warn=False) if p != final]
    kept = (
        f"the checkpoints before it are intact ({', '.join(before)})" if before else "no earlier checkpoint"
    )
    raise SisuError(
        f"could not write checkpoint {final} ({problem}; {_free_space(final.parent)}); {kept}: free space (or "
        "fix the filesystem) and resume with resume=auto"
    )


def _free_space(directory: Path) -> str:
    try:
        return f"{shutil.disk_usage(directory).free / 1e9:.1f} GB free there"
    except OSError:
        return "free space unknown"


def verify_checkpoint(path: Path, *, step: int | None) -> tuple[str | None, integrity.Verified | None]:
    """Collectively check checkpoint `path` (every rank its own files): (the first problem of any rank, or None;
    this rank's checked contents)."""
    problem, verified = None, None
    try:
        verified = integrity.verify(path, rank=rank(), world=world_size(), step=step)
    except integrity.Damaged as exc:
        problem = str(exc)
    except OSError as exc:
        problem = f"{exc.strerror or exc} ({exc.filename or path})"
    problems = [(r, p) for r, p in enumerate(all_gather_objects(problem)) if p]
    if problems:
        first_rank, first = problems[0]
        return (first if world_size() == 1 else f"{first} (rank {first_rank})"), None
    return None, verified


def load_checkpoint(
    path: str | os.PathLike,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    verified: integrity.Verified,
) -> dict[str, Any]:
    """Restore model, optimizer and this rank's RNG from checkpoint `path`, verified by verify_checkpoint (its
    shared files are loaded from the checked bytes); returns the trainer state."""
    path = Path(path)
    assert verified.rng_bytes is not None, "a checkpoint of another world size is refused before it is loaded"
    state: dict[str, Any] = {"model": get_model_state_dict(model)}
    if optimizer is not None:
        state["optim"] = get_optimizer_state_dict(model, optimizer)
    metadata = parse_dcp_metadata(verified.metadata_bytes, path=path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        dcp.load(state, storage_reader=_CheckedMetadataReader(path, metadata), planner=_DataOnlyLoadPlanner())
    changed = [c for c in all_gather_objects(verified.check_unchanged(path)) if c]
    if changed:
        raise SisuError(
            f"{changed[0]}: another process is writing into this checkpoint; resume again when it stops"
        )
    set_model_state_dict(model, state["model"])
    if optimizer is not None:
        set_optimizer_state_dict(model, optimizer, state["optim"])
    load_rng_state(verified.rng_bytes)
    return verified.trainer_state


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
    out = Path(out_dir)
    main = rank() == 0
    tmp = out.parent / f".{out.name}.tmp"
    problem = None  # rank 0's failed write: it stops writing but keeps gathering, so no rank is left waiting
    if main:
        try:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        except OSError as exc:
            problem = str(exc)
    limit = _parse_size(max_shard_size)
    tied = getattr(model.config, "tie_word_embeddings", False)
    options = StateDictOptions(full_state_dict=False)
    sharded = get_model_state_dict(model, options=options)
    shards: list[dict[str, torch.Tensor]] = [{}]
    sizes = [0]
    for key, value in sharded.items():
        name = _clean_key(key)
        full = value.full_tensor() if hasattr(value, "full_tensor") else value
        if not main or problem or (tied and name == "lm_head.weight"):
            continue
        tensor = full.detach().to("cpu", dtype=dtype or full.dtype).contiguous()
        nbytes = tensor.numel() * tensor.element_size()
        if sizes[-1] and sizes[-1] + nbytes > limit:
            try:
                _flush(shards, tmp)
            except OSError as exc:
                problem = str(exc)
                continue
            shards.append({})
            sizes.append(0)
        shards[-1][name] = tensor
        sizes[-1] += nbytes
    if main and not problem:
        try:
            exported_dtype = dtype or next(iter(sharded.values())).dtype
            _write_export(model, tokenizer, shards, tmp, out, total_size=sum(sizes), dtype=exported_dtype,
                          chat_template=chat_template, end_of_turn=end_of_turn)  # fmt: skip
        except OSError as exc:
            problem = str(exc)
    problem = all_gather_objects(problem)[0]
    if problem:
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        kept = f"the previous export in {out} is as it was" if out.exists() else "nothing was exported"
        raise SisuError(
            f"could not export {out} ({problem}; {_free_space(out.parent)}); {kept}: free space and export again"
        )
    return out if main else None


def _write_export(
    model: torch.nn.Module,
    tokenizer: Any,
    shards: list[dict],
    tmp: Path,
    out: Path,
    *,
    total_size: int,
    dtype: torch.dtype,
    chat_template: str | None,
    end_of_turn: str | None,
) -> None:
    """Rank 0: the last shard, the index, configs and tokenizer into `tmp`, then `tmp` moved to `out`."""
    _flush(shards, tmp, final=True, total_size=total_size)
    config, generation = serving_configs(model, tokenizer, dtype=dtype, end_of_turn=end_of_turn)
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


def _flush(shards: list[dict], tmp: Path, *, final: bool = False, total_size: int = 0) -> None:
    """Write the newest shard under a provisional name; on `final`, rename all and write the index."""
    index = len(shards)
    if shards[-1]:
        save_safetensors(shards[-1], tmp / f"part-{index:05d}.safetensors", metadata={"format": "pt"})
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
