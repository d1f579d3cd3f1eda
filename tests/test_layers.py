"""sisu's packages form layers whose imports only point down:

    launch  ->  planner  ->  eval  ->  runtime  ->  data  ->  losses
    launch  ->  trainer  ->  runtime

`losses/` is pure tensor math; `data/` knows nothing above it (it may use losses' constants); `runtime/` is what
every job shares (process group, devices, model loading and sharding, attention, fingerprints, metrics, the
job CLI); `trainer/` is the training loop on top of it; `eval/` (generation jobs) and `planner/` (memory plans of
every job) stand on runtime and data and never import the trainer (the planner gets the training jobs' config
classes from launch); `launch/` is thin and may use all. Every import statement of every module is read, also
those inside functions and under TYPE_CHECKING: an import of a package a layer may not use fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

from harness import REPO

# package -> the packages it may import (besides itself)
ALLOWED = {
    "losses": set(),
    "data": {"losses"},
    "runtime": {"data", "losses"},
    "trainer": {"runtime", "data", "losses"},
    "eval": {"runtime", "data", "losses"},
    "planner": {"eval", "runtime", "data", "losses"},
    "launch": {"planner", "eval", "trainer", "runtime", "data", "losses"},
}
LAYERS = list(ALLOWED)


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
                if top in ALLOWED and top != package and top not in ALLOWED[package]:
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
    (tmp_path / "eval" / "sideways.py").write_text("import runtime.model\nfrom trainer import jobs\n", encoding="utf-8")
    (tmp_path / "planner" / "sideways.py").write_text("from trainer.jobs import SFTConfig\n", encoding="utf-8")
    assert upward_imports(tmp_path) == [
        "data/bad.py:4 (data) imports trainer.jobs (trainer)",
        "data/bad.py:6 (data) imports eval.generate (eval)",
        "eval/sideways.py:2 (eval) imports trainer (trainer)",
        "planner/sideways.py:1 (planner) imports trainer.jobs (trainer)",
    ]


def test_the_ifeval_scorer_never_imports_torch():
    """eval/ifeval scores responses from any engine: pure Python (langdetect only); of sisu it uses only the
    error types and the file helpers (data/errors.py, data/files.py), and importing it loads no torch."""
    import subprocess
    import sys

    heavy = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in sorted((REPO / "eval" / "ifeval").rglob("*.py"))
        for line, module in imported_modules(path)
        if module.split(".")[0] in ("torch", "transformers", "trainer", "runtime", "losses")
        or (module.split(".")[0] == "data" and module not in ("data.errors", "data.files"))
    ]
    assert heavy == []
    code = "import sys, eval.ifeval, eval.ifeval.cli; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert "'torch'" not in loaded.stdout and "'transformers'" not in loaded.stdout, loaded.stdout
