import dataclasses

import pytest

from launch.config_docs import DOC_PATH, render
from launch.jobs import JOBS
from runtime.config import ConfigError, config_to_dict, iter_fields, load_config, write_config
from trainer.jobs import DPOConfig, SFTConfig

BASE = """\
output_dir: out/run
seed: 3
model:
  path: some/model
data:
  sources:
    - {path: en.jsonl, format: messages, lang: en}
    - {path: fi.jsonl, format: messages, lang: fi, fraction: 0.1}
train:
  global_batch_size: 8
  micro_batch_size: 2
  max_seq_len: 256
optim:
  lr: 2e-5
checkpoint:
  every_steps: 10
"""


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(BASE)
    return path


def test_load_yaml_types_and_defaults(recipe):
    cfg = load_config(SFTConfig, recipe)
    assert cfg.output_dir == "out/run" and cfg.seed == 3 and cfg.model.path == "some/model"
    assert cfg.optim.lr == pytest.approx(2e-5)  # YAML 1.1 reads 2e-5 as a string
    assert isinstance(cfg.optim.lr, float)
    assert cfg.data.sources[1].fraction == 0.1 and cfg.data.sources[1].lang == "fi"
    assert cfg.train.epochs == 1 and cfg.resume == "auto" and cfg.train.max_steps is None
    assert cfg.checkpoint.every_steps == 10


def test_overrides_scalars_lists_and_indices(recipe):
    cfg = load_config(
        SFTConfig,
        recipe,
        [
            "train.max_steps=5",
            "data.sources.1.fraction=0.4",
            "optim.betas=[0.9, 0.95]",
            "resume=none",
            "model.init_config={model_type: llama, hidden_size: 32}",
        ],
    )
    assert cfg.train.max_steps == 5
    assert cfg.data.sources[1].fraction == 0.4
    assert cfg.optim.betas == [0.9, 0.95]
    assert cfg.resume == "none"
    assert cfg.model.init_config == {"model_type": "llama", "hidden_size": 32}


def test_override_replaces_whole_list(recipe):
    cfg = load_config(SFTConfig, recipe, ["data.sources=[{path: x.jsonl, format: messages}]"])
    assert [s.path for s in cfg.data.sources] == ["x.jsonl"]
    assert cfg.data.sources[0].format == "messages"


def test_overrides_without_file():
    cfg = load_config(SFTConfig, None, ["output_dir=o", "model.path=m"])
    assert cfg.output_dir == "o" and cfg.model.path == "m"


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.micro_bach_size=2", "unknown key 'train.micro_bach_size'; did you mean 'micro_batch_size'?"),
        ("optimm.lr=1", "unknown key 'optimm'; did you mean 'optim'?"),
        ("data.sources.0.fromat=messages", "unknown key 'data.sources.0.fromat'; did you mean 'format'?"),
        (
            "optim.scheduler=cosin",
            "'cosin' is not one of 'cosine', 'linear', 'constant'; did you mean 'cosine'?",
        ),
        ("train.epochs=two", "train.epochs: expected an integer, got 'two'"),
        ("train.epochs=1.5", "train.epochs: expected an integer"),
        ("train.activation_checkpointing=maybe", "expected true or false"),
        ("data.sources.7.path=x", "index 7 out of range (list has 2 items)"),
        ("data.sources.x.path=x", "a list needs a numeric index"),
        ("train.micro_batch_size=3", "global_batch_size (8) is not divisible by train.micro_batch_size (3)"),
        ("data.sources.1.fraction=0", "data.sources.1: fraction must be in (0, 1]"),
        ("optim.lr=-1", "optim.lr must be > 0"),
        ("novalue", "expected key=value"),
        ("train.max_steps=[1", "not valid YAML"),
    ],
)
def test_bad_values_give_one_line_errors(recipe, override, message):
    with pytest.raises(ConfigError) as info:
        load_config(SFTConfig, recipe, [override])
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_missing_required_key(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model: {path: m}\n")
    with pytest.raises(ConfigError, match="missing required key 'output_dir'"):
        load_config(SFTConfig, path)


def test_model_needs_path_or_init_config(tmp_path):
    with pytest.raises(ConfigError, match="model.path .* or model.init_config"):
        load_config(SFTConfig, None, ["output_dir=o"])


def test_file_errors_name_file_and_line(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(SFTConfig, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("output_dir: o\nmodel:\n  path: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+: invalid YAML"):
        load_config(SFTConfig, bad)
    top = tmp_path / "list.yaml"
    top.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(SFTConfig, top)


def test_resolved_config_round_trips(recipe, tmp_path):
    cfg = load_config(DPOConfig, recipe, ["dpo.beta=0.05", "reference.mode=precompute"])
    out = tmp_path / "resolved" / "config.yaml"
    write_config(cfg, out)
    again = load_config(DPOConfig, out)
    assert again == cfg
    assert config_to_dict(again)["dpo"]["beta"] == 0.05


def test_fixed_key_names_exist():
    keys = {key for key, *_ in iter_fields(SFTConfig)}
    for fixed in (
        "output_dir",
        "seed",
        "model.path",
        "train.max_steps",
        "train.epochs",
        "train.global_batch_size",
        "train.micro_batch_size",
        "train.max_seq_len",
        "optim.lr",
        "checkpoint.every_steps",
        "resume",
    ):
        assert fixed in keys
    assert {k for k, *_ in iter_fields(DPOConfig)} >= {"dpo.beta", "reference.mode", "reference.path"}


def test_every_key_is_documented_and_docs_are_current():
    for name, cls in JOBS.items():
        for key, _tp, _default, help_text in iter_fields(cls):
            assert help_text.strip(), f"{name}: {key} has no help text"
        assert dataclasses.is_dataclass(cls)
    assert DOC_PATH.read_text(encoding="utf-8") == render(), "run: python -m launch.config_docs"
