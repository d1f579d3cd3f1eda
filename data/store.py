"""The tokenized dataset on disk: flat token arrays in shards, memory-mapped read-only by every rank.

    tokenized-<key>/
      dataset.json               what the key covers, the sources' load reports, tokenization statistics, shards
      examples.npy               one row per example (structured array, see SFT_TABLE / PAIR_TABLE)
      shards/shard-00000/        tokens.npy (int32, every example's tokens back to back; a pair's prompt, chosen
                                 and rejected completion in that order), labels.npy (SFT: bool, the token carries
                                 loss), ids.npy (uint8, the source ids, UTF-8), examples.npy, shard.json

Why plain `.npy` files: `np.load(mmap_mode="r", allow_pickle=False)` maps them without reading and without
running anything a file could hold (a pickle is refused), the operating system's page cache keeps one copy per
node for all its ranks, and numpy is already a dependency. Arrow (`datasets`) would map as well but stores
variable-length lists with its own offsets and a schema per file for the same four bytes a token; the arrays
here are all sisu needs. An example is sliced out only when its micro-batch is built (`TokenizedDataset[i]`);
planning reads the lengths column alone.

Every file is written under a temporary name and moved into place; a shard directory appears whole or not at
all, and `dataset.json`, written last, says the dataset is complete. Anything that does not match what
dataset.json says (another version, a missing or truncated file) is reported with a warning and rebuilt, never
loaded.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data.files import temp_dir, temp_file
from data.tokenize import IGNORE_INDEX, PreferenceExample, SFTExample

logger = logging.getLogger("sisu")
STORE_VERSION = 3
_COMMON = [("shard", "<i4"), ("start", "<i8"), ("source", "<i2"), ("lang", "<i2"), ("truncated", "?"),
           ("id_start", "<i8"), ("id_length", "<i4")]  # fmt: skip
SFT_TABLE = np.dtype([*_COMMON, ("length", "<i4"), ("num_targets", "<i4")])
PAIR_TABLE = np.dtype([*_COMMON, ("prompt", "<i4"), ("chosen", "<i4"), ("rejected", "<i4")])


class StoreProblem(Exception):
    """A file of the store is not what dataset.json or shard.json says (the caller warns and rebuilds)."""


def table_dtype(kind: str) -> np.dtype:
    return PAIR_TABLE if kind == "preference" else SFT_TABLE


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def _save_array(directory: Path, name: str, array: np.ndarray) -> None:
    with open(directory / name, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def write_json_atomic(path: Path, data: Any) -> None:
    fd, tmp = temp_file(path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, ensure_ascii=False)
    os.replace(tmp, path)


def write_shard(
    shards_dir: Path,
    index: int,
    *,
    kind: str,
    key: str,
    examples: Sequence[SFTExample | PreferenceExample],
    sources: Sequence[int],
    stats: dict,
) -> dict:
    """Write one shard (examples[i] came from data.sources[sources[i]]) and return its shard.json."""
    langs = sorted({e.lang for e in examples})
    lang_code = {lang: i for i, lang in enumerate(langs)}
    table = np.zeros(len(examples), dtype=table_dtype(kind))
    encoded = [e.source_id.encode("utf-8") for e in examples]
    table["source"] = sources
    table["lang"] = [lang_code[e.lang] for e in examples]
    table["truncated"] = [e.truncated for e in examples]
    table["id_length"] = [len(b) for b in encoded]
    table["id_start"] = np.cumsum([0, *table["id_length"][:-1]]) if len(examples) else []
    if kind == "preference":
        pieces = [np.asarray(piece, dtype=np.int32) for e in examples
                  for piece in (e.prompt_ids, e.chosen_ids, e.rejected_ids)]  # fmt: skip
        table["prompt"] = [len(e.prompt_ids) for e in examples]
        table["chosen"] = [len(e.chosen_ids) for e in examples]
        table["rejected"] = [len(e.rejected_ids) for e in examples]
        sizes = table["prompt"].astype(np.int64) + table["chosen"] + table["rejected"]
    else:
        pieces = [np.asarray(e.input_ids, dtype=np.int32) for e in examples]
        table["length"] = [len(e.input_ids) for e in examples]
        table["num_targets"] = [e.num_target_tokens for e in examples]
        sizes = table["length"].astype(np.int64)
    table["start"] = np.cumsum([0, *sizes[:-1]]) if len(examples) else []
    tokens = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    start = len(tokens)
    info = {
        "version": STORE_VERSION,
        "key": key,
        "kind": kind,
        "index": index,
        "num_examples": len(examples),
        "num_tokens": start,
        "langs": langs,
        "stats": stats,
    }
    shards_dir.mkdir(parents=True, exist_ok=True)
    final = shards_dir / shard_name(index)
    tmp = temp_dir(shards_dir, prefix=f".{final.name}.")
    try:
        _save_array(tmp, "tokens.npy", tokens)
        if kind == "sft":
            masks = [np.asarray(e.labels) != IGNORE_INDEX for e in examples]
            _save_array(tmp, "labels.npy", np.concatenate(masks) if masks else np.zeros(0, dtype=bool))
        _save_array(tmp, "ids.npy", np.frombuffer(b"".join(encoded), dtype=np.uint8))
        _save_array(tmp, "examples.npy", table)
        with open(tmp / "shard.json", "w", encoding="utf-8") as handle:
            json.dump(info, handle, ensure_ascii=False)
        try:
            os.rename(tmp, final)
        except OSError:  # another job wrote this shard first: theirs holds the same data
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def _load(path: Path, *, dtype: np.dtype, length: int | None) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise StoreProblem(f"{path.name}: {exc}") from None
    if array.dtype != dtype or array.ndim != 1:
        raise StoreProblem(f"{path.name}: holds {array.dtype} {array.shape}, expected {dtype} [n]")
    if length is not None and len(array) != length:
        raise StoreProblem(f"{path.name}: holds {len(array)} entries, expected {length}")
    return array


def read_shard(directory: Path, *, key: str, kind: str) -> tuple[dict, dict[str, np.ndarray]]:
    """A complete shard's shard.json and mapped arrays; StoreProblem when anything does not match."""
    try:
        info = json.loads((directory / "shard.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StoreProblem(f"{directory.name}/shard.json: {exc}") from None
    if info.get("version") != STORE_VERSION or info.get("key") != key or info.get("kind") != kind:
        raise StoreProblem(
            f"{directory.name} was written by another sisu version or for other data "
            f"(version {info.get('version')}, this sisu writes {STORE_VERSION})"
        )
    arrays = {
        "tokens": _load(directory / "tokens.npy", dtype=np.dtype("<i4"), length=info["num_tokens"]),
        "ids": _load(directory / "ids.npy", dtype=np.dtype("u1"), length=None),
        "examples": _load(directory / "examples.npy", dtype=table_dtype(kind), length=info["num_examples"]),
    }
    if kind == "sft":
        arrays["labels"] = _load(directory / "labels.npy", dtype=np.dtype("bool"), length=info["num_tokens"])
    return info, arrays


def finalize(partial: Path, final: Path, *, meta: dict) -> None:
    """Write examples.npy (all shards' rows, shard and language codes made global) and dataset.json into the
    partial directory, then move it to its final name."""
    kind, key = meta["kind"], meta["key"]
    langs = meta["langs"]
    tables = []
    for index in range(len(meta["shards"])):
        info, arrays = read_shard(partial / "shards" / shard_name(index), key=key, kind=kind)
        table = np.array(arrays["examples"])
        table["shard"] = index
        codes = np.array([langs.index(lang) for lang in info["langs"]], dtype=np.int16)
        if len(table):
            table["lang"] = codes[table["lang"]]
        tables.append(table)
    fd, tmp = temp_file(partial, prefix=".examples.", suffix=".npy")
    with os.fdopen(fd, "wb") as handle:
        np.save(
            handle, np.concatenate(tables) if tables else np.zeros(0, table_dtype(kind)), allow_pickle=False
        )
    os.replace(tmp, partial / "examples.npy")
    write_json_atomic(partial / "dataset.json", meta)
    os.rename(partial, final)


class TokenizedDataset:
    """A complete store, mapped: `len()`, `ds[i]` (an SFTExample or PreferenceExample, built on access) and
    whole columns (`lengths()`, `langs`, ...) for planning. Nothing of it is held in memory but the mapped pages
    the process touches."""

    def __init__(
        self, root: Path, meta: dict, table: np.ndarray, shards: list[dict[str, np.ndarray]]
    ) -> None:
        self.root = root
        self.meta = meta
        self.kind: str = meta["kind"]
        self.key: str = meta["key"]
        self.langs: list[str] = meta["langs"]
        self.table = table
        self._shards = shards

    @classmethod
    def open(cls, root: Path, *, key: str) -> TokenizedDataset | None:
        """The store at `root`, or None: missing (silently), or not a complete store of this sisu for `key` (with
        a warning; the caller builds it again)."""
        meta_path = root / "dataset.json"
        if not meta_path.exists():
            return None
        try:
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise StoreProblem(f"dataset.json: {exc}") from None
            if meta.get("version") != STORE_VERSION or meta.get("key") != key:
                raise StoreProblem(
                    f"written by another sisu version or for other data (version {meta.get('version')}, "
                    f"this sisu writes {STORE_VERSION})"
                )
            kind = meta["kind"]
            table = _load(root / "examples.npy", dtype=table_dtype(kind), length=meta["num_examples"])
            shards = []
            for index, expected in enumerate(meta["shards"]):
                info, arrays = read_shard(root / "shards" / shard_name(index), key=key, kind=kind)
                if info["num_examples"] != expected["num_examples"]:
                    raise StoreProblem(f"{shard_name(index)} holds other examples than dataset.json says")
                shards.append(arrays)
        except (StoreProblem, KeyError, TypeError) as exc:
            logger.warning(
                "ignoring %s: not a complete tokenized dataset of this sisu (%s); tokenizing again", root, exc
            )
            return None
        return cls(root, meta, table, shards)

    def __len__(self) -> int:
        return len(self.table)

    def _row(self, index: int) -> tuple[np.void, dict[str, np.ndarray]]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"example {index} of {len(self)}")
        row = self.table[index]
        return row, self._shards[int(row["shard"])]

    def source_id(self, index: int) -> str:
        return self._source_id(*self._row(index))

    @staticmethod
    def _source_id(row: np.void, shard: dict[str, np.ndarray]) -> str:
        start = int(row["id_start"])
        return bytes(shard["ids"][start : start + int(row["id_length"])]).decode("utf-8")

    def __getitem__(self, index: int) -> SFTExample | PreferenceExample:
        row, shard = self._row(index)
        start = int(row["start"])
        lang, truncated = self.langs[int(row["lang"])], bool(row["truncated"])
        source_id = self._source_id(row, shard)
        tokens = shard["tokens"]
        if self.kind == "preference":
            p, c, r = int(row["prompt"]), int(row["chosen"]), int(row["rejected"])
            ids = tokens[start : start + p + c + r].tolist()
            return PreferenceExample(
                tuple(ids[:p]), tuple(ids[p : p + c]), tuple(ids[p + c :]), source_id, lang, truncated
            )
        end = start + int(row["length"])
        ids = tokens[start:end]
        labels = np.where(shard["labels"][start:end], ids, IGNORE_INDEX)
        return SFTExample(tuple(ids.tolist()), tuple(labels.tolist()), source_id, lang, truncated)

    # -- columns ---------------------------------------------------------------------------------------------

    def lengths(self) -> np.ndarray:
        """Tokens per example as training counts them (a pair: prompt + the longer completion), int64."""
        if self.kind == "preference":
            t = self.table
            return t["prompt"].astype(np.int64) + np.maximum(t["chosen"], t["rejected"]).astype(np.int64)
        return self.table["length"].astype(np.int64)

    def pair_lengths(self) -> np.ndarray:
        """Tokens of each pair when packed (the prompt once, then both completions), int64."""
        t = self.table
        return t["prompt"].astype(np.int64) + t["chosen"] + t["rejected"]

    def num_target_tokens(self) -> int:
        if self.kind == "preference":
            return int(
                self.table["chosen"].astype(np.int64).sum() + self.table["rejected"].astype(np.int64).sum()
            )
        return int(self.table["num_targets"].astype(np.int64).sum())

    def lang_codes(self) -> np.ndarray:
        return np.asarray(self.table["lang"])

    def source_codes(self) -> np.ndarray:
        return np.asarray(self.table["source"])
