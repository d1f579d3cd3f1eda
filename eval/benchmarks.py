"""Reading IFEval-schema benchmark prompts (a local file or a hub dataset), for eval and for the jobs that must
keep benchmark prompts out of training data (make_pairs)."""

from __future__ import annotations

from pathlib import Path

from data.errors import DataError, Unreachable, hub_offline
from eval.ifeval import Prompt, load_hub_prompts, load_prompts


def read_benchmark_prompts(location: str, *, subset: str | None, split: str, what: str) -> list[Prompt]:
    """The prompts of a local IFEval-schema file or a hub dataset; `what` names it in errors. A hub dataset out of
    reach offline raises Unreachable."""
    path = Path(location).expanduser()
    if path.suffix in (".jsonl", ".json") or path.exists():
        if not path.is_file():
            raise DataError(f"{what}: {path} not found")
        return load_prompts(path)
    try:
        return load_hub_prompts(location, config=subset, split=split)
    except (ValueError, OSError) as exc:
        if not hub_offline():
            raise
        raise Unreachable(f"{what}: {str(exc).splitlines()[0]}") from None
