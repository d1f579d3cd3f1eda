"""sisu's packages form layers whose imports only point down:

    launch  ->  planner  ->  eval  ->  trainer  ->  data  ->  losses

`losses/` is pure tensor math; `data/` knows nothing above it (it may use losses' constants); `trainer/` uses data
and losses; `eval/` uses trainer (model loading, generation under FSDP, the process group) and data; the planner
reads every job's config; `launch/` is thin and may use all. Every import statement of every module is read,
also those inside functions and under TYPE_CHECKING: an arrow that points up fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["losses", "data", "trainer", "eval", "planner", "launch"]
LEVEL = {name: level for level, name in enumerate(LAYERS)}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def upward_imports(root: Path = REPO) -> list[str]:
    found = []
    for package in LAYERS:
        for path in sorted((root / package).rglob("*.py")):
            for line, module in imported_modules(path):
                top = module.split(".")[0]
                if top in LEVEL and LEVEL[top] > LEVEL[package]:
                    found.append(f"{path.relative_to(root)}:{line} ({package}) imports {module} ({top})")
    return found


def test_imports_point_down():
    assert upward_imports() == [], "\n".join(upward_imports())


def test_every_package_is_a_layer():
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages <= set(LAYERS), f"packages without a layer: {sorted(packages - set(LAYERS))}"


def test_the_check_finds_an_arrow_up(tmp_path):
    for package in LAYERS:
        (tmp_path / package).mkdir()
    (tmp_path / "data" / "bad.py").write_text(
        "from typing import TYPE_CHECKING\nimport losses\nif TYPE_CHECKING:\n    from trainer.jobs import X\n"
        "def f():\n    import eval.generate\n",
        encoding="utf-8",
    )
    assert upward_imports(tmp_path) == [
        "data/bad.py:4 (data) imports trainer.jobs (trainer)",
        "data/bad.py:6 (data) imports eval.generate (eval)",
    ]


def test_the_ifeval_scorer_never_imports_torch():
    """eval/ifeval scores responses from any engine: pure Python (langdetect only)."""
    heavy = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in sorted((REPO / "eval" / "ifeval").rglob("*.py"))
        for line, module in imported_modules(path)
        if module.split(".")[0] in ("torch", "transformers", "trainer", "data", "losses")
    ]
    assert heavy == []
