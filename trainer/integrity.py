"""Checkpoint checksums: written with every checkpoint, verified before one is resumed.

`checksums.json` in a checkpoint holds the SHA-256 and size of every other file in it. Each rank hashes the files
it wrote (its DCP shards `__R_*.distcp` and `rng_rankR.safetensors`), rank 0 the rest (`.metadata`,
`trainer_state.json`); the digests are gathered and rank 0 writes the file before the checkpoint is renamed into
place. On resume every rank checks its own files the same way, and each rank checks the small shared files itself:
the agreed verdict is the first problem of any rank, so every rank falls back (or refuses) together.

What is checked is what is loaded: `.metadata`, `trainer_state.json` and the RNG state are read once into memory,
checked, and parsed from those bytes (DCP is handed the parsed metadata and never opens the file again). The
shards are too large for memory: they are hashed, and their inode, size and modification time taken then must be
the same after DCP has read them, else the resume stops. Hashing reads each rank's shards once on save and once on
resume (SHA-256: 1.45 GB/s on one CPU core, README "What clusters do to a run").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any

MANIFEST = "checksums.json"
VERSION = 1


def digest_bytes(data: bytes) -> dict[str, Any]:
    """SHA-256 and size of `data`, as checksums.json lists them."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _digest_file(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256")
    return {"sha256": digest.hexdigest(), "bytes": path.stat().st_size}


def own_files(directory: Path, *, rank: int) -> list[str]:
    """The files of checkpoint `directory` that `rank` wrote and hashes (rank 0: also every unclaimed file)."""
    mine = re.compile(rf"^(__{rank}_\d+\.distcp|rng_rank{rank}\.safetensors)$")
    anyone = re.compile(r"^(__\d+_\d+\.distcp|rng_rank\d+\.safetensors)$")
    names = sorted(entry.name for entry in directory.iterdir() if entry.is_file() and entry.name != MANIFEST)
    return [name for name in names if mine.match(name) or (rank == 0 and not anyone.match(name))]


def digest_own_files(directory: Path, *, rank: int) -> dict[str, dict[str, Any]]:
    """SHA-256 and size of every file `rank` is responsible for in `directory`."""
    return {name: _digest_file(directory / name) for name in own_files(directory, rank=rank)}


def write_manifest(directory: Path, digests: dict[str, dict[str, Any]]) -> None:
    body = {"version": VERSION, "algorithm": "sha256", "files": dict(sorted(digests.items()))}
    (directory / MANIFEST).write_text(json.dumps(body, indent=1), encoding="utf-8")


@dataclasses.dataclass
class Verified:
    """What a rank checked in a checkpoint: the parsed shared files and the identities of the shards."""

    trainer_state: dict[str, Any]
    metadata_bytes: bytes
    rng_bytes: bytes | None  # None: written by another world size (nothing of this rank's checked)
    shard_stats: dict[str, tuple[int, int, int]]

    def check_unchanged(self, directory: Path) -> str | None:
        """None when every shard checked is still the file that was hashed; else what changed."""
        for name, before in self.shard_stats.items():
            try:
                now = _identity(directory / name)
            except OSError:
                now = None
            if now != before:
                return f"{directory / name} changed while it was being loaded"
        return None


def _identity(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


class Damaged(Exception):
    """A checkpoint file that does not match its checksum (the message names the file and what is wrong)."""


def _read_checked(path: Path, expected: dict[str, Any] | None) -> bytes:
    if expected is None:
        raise Damaged(f"{path.name} is not listed in {MANIFEST}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise Damaged(f"{path.name} is missing") from None
    if len(data) != expected.get("bytes"):
        raise Damaged(f"{path.name} has {len(data)} bytes, {expected.get('bytes')} were written")
    if digest_bytes(data)["sha256"] != expected.get("sha256"):
        raise Damaged(f"{path.name} does not match its checksum")
    return data


def read_manifest(directory: Path) -> dict[str, dict[str, Any]]:
    try:
        body = json.loads((directory / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise Damaged(f"{MANIFEST} is missing (written by an older sisu, or damaged)") from None
    except (OSError, ValueError) as exc:
        raise Damaged(f"{MANIFEST} is unreadable ({exc})") from None
    files = body.get("files") if isinstance(body, dict) else None
    if not isinstance(files, dict) or body.get("version") != VERSION:
        raise Damaged(f"{MANIFEST} is not a version-{VERSION} checksum list")
    return files


def verify(directory: Path, *, rank: int, world: int, step: int | None) -> Verified:
    """Check this rank's part of checkpoint `directory`; raises Damaged naming the first problem."""
    files = read_manifest(directory)
    state_bytes = _read_checked(directory / "trainer_state.json", files.get("trainer_state.json"))
    try:
        trainer_state = json.loads(state_bytes)
    except ValueError as exc:
        raise Damaged(f"trainer_state.json is not JSON ({exc})") from None
    if step is not None and trainer_state.get("step") != step:
        raise Damaged(f"trainer_state.json says step {trainer_state.get('step')}, the directory step {step}")
    metadata_bytes = _read_checked(directory / ".metadata", files.get(".metadata"))
    if (
        trainer_state.get("world_size", world) != world
    ):  # not this run's to resume: the trainer says so in one line
        return Verified(trainer_state, metadata_bytes, None, {})
    rng_name = f"rng_rank{rank}.safetensors"
    rng_bytes = _read_checked(directory / rng_name, files.get(rng_name))
    shard_stats = {}
    shard = re.compile(rf"^__{rank}_\d+\.distcp$")
    for name in sorted(files):
        if not shard.match(name):
            continue
        path = directory / name
        try:
            before = _identity(path)
            digest = _digest_file(path)
        except FileNotFoundError:
            raise Damaged(f"{name} is missing") from None
        if digest["bytes"] != files[name].get("bytes"):
            raise Damaged(f"{name} has {digest['bytes']} bytes, {files[name].get('bytes')} were written")
        if digest["sha256"] != files[name].get("sha256"):
            raise Damaged(f"{name} does not match its checksum")
        if _identity(path) != before:
            raise Damaged(f"{name} changed while it was being checked")
        shard_stats[name] = before
    return Verified(trainer_state, metadata_bytes, rng_bytes, shard_stats)


def safetensors_from_bytes(data: bytes) -> tuple[dict[str, Any], dict[str, str]]:
    """Tensors and metadata of a safetensors file held in memory."""
    from safetensors.torch import load

    header_size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_size])
    return load(data), header.get("__metadata__", {})
