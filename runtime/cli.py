"""Command-line front end shared by the torchrun jobs (launch/sft.py, dpo.py, eval.py, translate.py, make_pairs.py):
`--config FILE [--dry-run] [key=value ...]`.

sisu's refusals (`data.errors.SisuError`: bad config, bad data, unreachable model, a checkpoint of another run)
print one line and exit with their status (2; 3 for a diverged run). Anything else is a bug: its whole traceback,
every line prefixed with the rank on a multi-rank job, and exit status 1.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from data.errors import SisuError
from runtime.config import load_config

logger = logging.getLogger("sisu")


def parse_args(argv: Sequence[str] | None, *, prog: str, description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", help="YAML recipe (see docs/config.md for every key)")
    parser.add_argument("--dry-run", action="store_true", help="validate, print the plan, and exit")
    parser.add_argument(
        "--world-size",
        type=int,
        default=None,
        help="plan for this many ranks in --dry-run (default: from torchrun)",
    )
    parser.add_argument("overrides", nargs="*", help="key.path=value overrides, values parsed as YAML")
    return parser.parse_args(argv)


def exit_process(code: int) -> NoReturn:
    """Leave the process with `code`.

    A worker of a multi-process launch (WORLD_SIZE > 1) flushes its logs and streams and leaves with `os._exit`,
    skipping interpreter finalisation: by then the job has destroyed its process group and closed every output,
    and finalisation is where c10d/gloo's C++ threads can still abort the process ("terminate called without an
    active exception", SIGABRT; pytorch/pytorch#179291), which torchrun reports as a failed job after a finished
    run. A single process exits normally.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}  # no space, over quota, past the file-size limit


def user_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def run_job(
    argv: Sequence[str] | None,
    *,
    prog: str,
    config_cls: type,
    description: str,
    run: Callable[[Any], None],
    dry_run: Callable[[Any, int], list[str]],
) -> int:
    args = parse_args(argv, prog=prog, description=description)
    try:
        cfg = load_config(config_cls, args.config, args.overrides)
        if args.dry_run:
            world = args.world_size or int(os.environ.get("WORLD_SIZE", "1"))
            for line in dry_run(cfg, world):
                print(line)
            return 0
        run(cfg)
        return 0
    except SisuError as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        user_error(message)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - a bug: report it whole (the rank says which process), then exit 1
        if (
            isinstance(exc, OSError) and exc.errno in FULL
        ):  # a full disk (a metrics row, an eval output): no bug
            where = f" writing {exc.filename}" if exc.filename else ""
            user_error(
                f"the disk is full{where} ({exc.strerror}); free space and run again (resume=auto continues)"
            )
            return 2
        report_bug(traceback.format_exc())
        return 1


def report_bug(text: str) -> None:
    """A traceback on stderr; on a multi-rank job every line starts with `[rankN]`, so that the lines of several
    ranks stay apart in one log."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    prefix = f"[rank{os.environ.get('RANK', '0')}] " if world > 1 else ""
    sys.stderr.write("".join(f"{prefix}{line}\n" for line in text.rstrip("\n").split("\n")))
    sys.stderr.flush()
