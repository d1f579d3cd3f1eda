"""Every job recipe in recipes/ starts with the command that runs it and passes --dry-run (offline)."""

import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# experiment matrices (launch/experiments.py: a top-level `runs:` list) are checked in test_experiments.py
RECIPES = sorted(
    p for p in (REPO / "recipes").rglob("*.yaml") if not re.search(r"^runs:", p.read_text(), re.M)
)


def _job(path: Path) -> str:
    text = path.read_text()
    if re.search(r"^instruction_sources:|^target_lang:", text, re.M) and not re.search(
        r"^source_lang:", text, re.M
    ):
        return "make_pairs"
    if "translate" in path.name or "translate" in path.parent.name:
        return "translate"
    if re.search(r"^benchmarks:", text, re.M):
        return "eval"
    if re.search(r"^(dpo|reference):", text, re.M):
        return "dpo"
    return "sft"


def _launcher(job: str):
    spec = importlib.util.spec_from_file_location(f"launch_{job}", REPO / "launch" / f"{job}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipes_exist_for_the_paper():
    names = {p.name for p in (REPO / "recipes" / "poro34b").glob("*.yaml")}
    expected = {f"sft_en_fi_{x}pct.yaml" for x in (0, 10, 20, 40, 60, 80, 100)} | {
        "sft_prompt_masking.yaml",
        "sft_neftune.yaml",
        "dpo_en.yaml",
        "dpo_fi.yaml",
        "dpo_both.yaml",
        "eval_ifeval.yaml",
        "translate_oasst2.yaml",
        "translate_helpsteer2.yaml",
    }
    assert expected <= names


def _outputs_of_other_recipes() -> set[str]:
    found = set()
    for recipe in RECIPES:
        match = re.search(r"^output_dir: (\S+)", recipe.read_text(), re.M)
        if match:
            found.add(match.group(1))
    return found


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_recipe_starts_with_its_command_and_passes_dry_run(path, monkeypatch, capsys):
    """Offline, only hub data and models are allowed to be out of reach (a note); a recipe that reads what an
    earlier recipe of the chain writes (translations, an SFT model) fails its dry run until that ran, naming it."""
    job = _job(path)
    head = path.read_text().splitlines()[:6]
    assert head[0].startswith("#"), "the first line says what the recipe is"
    assert any(f"launch/{job}.py" in line or f"lumi.sbatch {job}" in line for line in head), head
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    code = _launcher(job).main(["--config", str(path), "--dry-run"])
    out = capsys.readouterr()
    if code == 0:
        assert "config valid" in out.out
        return
    error = out.err.strip()
    assert code == 2 and "\n" not in error, out.err
    waiting_for = [o for o in _outputs_of_other_recipes() if o in error and not str(path).endswith(o)]
    assert waiting_for, f"{path.name}: the dry run failed on something no earlier recipe writes: {error}"
