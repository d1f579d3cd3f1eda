"""Fingerprints of a model: which weights and tokenizer a result came from, without reading 68 GB.

Every file of a model directory that shapes its outputs (weights, configs, tokenizer files, chat template)
contributes its name, its size and a digest: the whole file up to 4 MiB; beyond that its first and last MiB and
16 blocks of 64 KiB spread over it (two trained models differ everywhere, so a sample tells them apart; a copy
or a move of the same files gives the same fingerprint, unlike modification times). A model built from
`model.init_config` is its config and seed; a hub id, its cached snapshot when there is one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

WHOLE_FILE = 4 * 2**20
EDGE = 2**20
BLOCK = 64 * 2**10
BLOCKS = 16
MODEL_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".jinja", ".txt", ".tiktoken")


def file_digest(path: Path) -> str:
    """sha256 of a file, or of a sample of it (edges and spread blocks) beyond WHOLE_FILE bytes."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        if size <= WHOLE_FILE:
            digest.update(handle.read())
            return digest.hexdigest()
        offsets = [0, size - EDGE] + [size * k // (BLOCKS + 1) for k in range(1, BLOCKS + 1)]
        for offset in offsets:
            handle.seek(offset)
            digest.update(handle.read(EDGE if offset in (0, size - EDGE) else BLOCK))
    return digest.hexdigest()


def directory_fingerprint(directory: Path) -> str:
    """One digest over the model files of `directory` (names, sizes, file digests)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in MODEL_SUFFIXES):
        digest.update(f"{path.name}\0{file_digest(path)}\0".encode())
    return digest.hexdigest()[:32]


def _local_directory(path: str) -> Path | None:
    local = Path(os.path.expanduser(path))
    if local.is_dir():
        return local
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(path, "config.json") if path.count("/") == 1 else None
    except Exception:  # noqa: BLE001 - any hub-cache problem means "not cached"
        cached = None
    return Path(cached).parent if isinstance(cached, str) else None


def model_fingerprint(model_cfg: Any, *, seed: int) -> str:
    """The fingerprint of `model_cfg`'s weights and tokenizer (see the module docstring)."""
    parts: dict[str, Any] = {}
    if model_cfg.init_config is not None:
        parts["init_config"] = {"config": model_cfg.init_config, "seed": seed}
    else:
        directory = _local_directory(model_cfg.path)
        parts["weights"] = directory_fingerprint(directory) if directory else {"hub": model_cfg.path}
    if model_cfg.tokenizer:
        directory = _local_directory(model_cfg.tokenizer)
        parts["tokenizer"] = directory_fingerprint(directory) if directory else {"hub": model_cfg.tokenizer}
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]
