"""eval/config.py: the generation settings every generation job (eval, translate, make_pairs) shares."""

import pytest

from eval.config import EvalConfig
from eval.pairs.config import PairsConfig
from eval.translation.config import TranslateConfig
from runtime.config import ConfigError, load_config

RECIPES = [
    (EvalConfig, "recipes/test/tiny_eval.yaml"),
    (TranslateConfig, "recipes/test/tiny_translate.yaml"),
    (PairsConfig, "recipes/test/tiny_pairs.yaml"),
]


@pytest.mark.parametrize(("cls", "recipe"), RECIPES, ids=[r for _, r in RECIPES])
@pytest.mark.parametrize("override", ["generation.batch_size=0", "generation.max_new_tokens=0"])
def test_every_generation_job_refuses_an_empty_batch_or_budget(repo, cls, recipe, override):
    load_config(cls, repo / recipe, [])
    with pytest.raises(
        ConfigError, match=r"tiny_\w+\.yaml: generation.batch_size and generation.max_new_tokens"
    ):
        load_config(cls, repo / recipe, [override])
