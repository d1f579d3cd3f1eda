"""Files sisu writes, with the permissions an ordinary open() or mkdir() would give them. No torch.

sisu writes most files under a temporary name in their folder and moves them into place (a reader never sees half
a file). `tempfile` creates those private (0600, folders 0700), and safetensors' `save_file` does too; in a
project's shared directory the other members of the project then cannot read a tokenized dataset, a checkpoint's
RNG state or an exported model. These helpers give every such file the mode the umask allows instead.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _read_umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


UMASK = _read_umask()  # read once, at import (os.umask can only be read by setting it, which races threads)


def follow_umask(path: str | os.PathLike) -> None:
    """Give `path` the mode a plain open() (files) or mkdir() (folders) would have given it."""
    base = 0o777 if Path(path).is_dir() else 0o666
    os.chmod(path, base & ~UMASK)


def temp_file(directory: str | os.PathLike, *, prefix: str = ".", suffix: str = ".tmp") -> tuple[int, str]:
    """(fd, path) of a new file in `directory` (tempfile.mkstemp), with the umask's mode."""
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    follow_umask(path)
    return fd, path


def temp_dir(directory: str | os.PathLike | None, *, prefix: str = ".") -> Path:
    """A new folder in `directory` (tempfile.mkdtemp), with the umask's mode."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=directory))
    follow_umask(path)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write via a temporary file in the same directory and rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
