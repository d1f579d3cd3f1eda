"""Every job recipe in recipes/ starts with the command that runs it and passes --dry-run (offline)."""

import importlib.util
import re
from pathlib import Path

import pytest
from harness import REPO

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


def _output_dir(recipe: Path) -> str | None:
    match = re.search(r"^output_dir: (\S+)", recipe.read_text(), re.M)
    return match.group(1) if match else None


def _named_outputs_of_other_recipes(recipe: Path, error: str) -> list[str]:
    """The output folders of other recipes that `error` names (as a whole path component, not as a prefix of
    another folder's name); the recipe's own output folder is taken out of the text first."""

    def named(folder: str) -> str:
        return re.escape(folder) + r"(?![\w.-])"

    own = _output_dir(recipe)
    text = re.sub(named(own), "", error) if own else error
    others = {d for r in RECIPES if r != recipe and (d := _output_dir(r)) and d != own}
    return sorted(d for d in others if re.search(named(d), text))


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
    waiting_for = _named_outputs_of_other_recipes(path, error)
    assert waiting_for, f"{path.name}: the dry run failed on something no earlier recipe writes: {error}"
