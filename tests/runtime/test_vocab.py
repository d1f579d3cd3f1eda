"""A template's markers become single tokens of a base tokenizer, with embedding rows set to the mean row."""

from __future__ import annotations

import pytest
import torch

from data.templates import ChatTemplate
from runtime.model import build_model, load_tokenizer, prepare_tokenizer
from runtime.settings import ModelConfig
from runtime.vocab import init_new_rows

BASE = "recipes/test/tokenizer_base"  # <s>, </s>, 256 bytes, no chat template
CHATML = "recipes/test/tokenizer"  # the same bytes with <|im_start|>, <|im_end|> and a ChatML template


def test_chatml_markers_are_added_to_a_base_tokenizer(repo):
    tokenizer, template, added = prepare_tokenizer(ModelConfig(tokenizer=str(repo / BASE)), "chatml")
    assert template.name == "chatml" and template.end_of_turn == "<|im_end|>"
    assert added == [258, 259] and len(tokenizer) == 260
    assert tokenizer.convert_ids_to_tokens(added) == ["<|im_start|>", "<|im_end|>"]
    assert template.missing_markers(tokenizer) == []
    text = template.render(tokenizer, [{"role": "user", "content": "Moi"}], add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == 258 and ids.count(259) == 1  # each marker one token


def test_nothing_is_added_when_the_markers_are_tokens(repo):
    tokenizer, template, added = prepare_tokenizer(ModelConfig(tokenizer=str(repo / CHATML)), "chatml")
    assert added == [] and len(tokenizer) == 258
    tokenizer, template, added = prepare_tokenizer(ModelConfig(tokenizer=str(repo / CHATML)), "auto")
    assert template.name == "tokenizer" and template.end_of_turn == "<|im_end|>" and added == []


@pytest.mark.parametrize("tied", [True, False])
def test_new_rows_grow_the_embeddings_and_start_at_the_mean(tied):
    torch.manual_seed(0)
    spec = {
        "model_type": "llama",
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "vocab_size": 258,
        "tie_word_embeddings": tied,
    }
    model = build_model(ModelConfig(init_config=spec))
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    init_new_rows(model, vocab_size=260, new_ids=[258, 259])
    new_in = model.get_input_embeddings().weight
    new_out = model.get_output_embeddings().weight
    assert new_in.shape == (260, 16) and new_out.shape == (260, 16) and model.config.vocab_size == 260
    torch.testing.assert_close(new_in[:258], old_in)
    for row in (258, 259):
        torch.testing.assert_close(new_in[row], old_in.mean(0))
        torch.testing.assert_close(new_out[row], old_out.mean(0))
    assert (new_out is new_in) == tied


def test_spare_rows_of_a_padded_vocabulary_are_reused():
    torch.manual_seed(0)
    spec = {"model_type": "bloom", "hidden_size": 16, "n_head": 2, "n_layer": 1, "vocab_size": 264}
    model = build_model(ModelConfig(init_config=spec))
    old = model.get_input_embeddings().weight.detach().clone()
    init_new_rows(model, vocab_size=260, new_ids=[258, 259])
    weight = model.get_input_embeddings().weight
    assert weight.shape == (264, 16)
    torch.testing.assert_close(weight[258], old[:258].mean(0))
    torch.testing.assert_close(weight[260:], old[260:])


def test_a_tokenizer_that_does_not_belong_to_the_model_is_refused(repo):
    from runtime.builder import ShardingSettings, build_sharded_model
    from runtime.distributed import init_distributed, teardown

    info = init_distributed(backend="gloo")
    try:
        spec = {"model_type": "bloom", "hidden_size": 16, "n_head": 2, "n_layer": 1, "vocab_size": 100}
        with pytest.raises(
            ValueError, match="the model has 100 embedding rows but the tokenizer has 258 tokens"
        ):
            build_sharded_model(
                ModelConfig(init_config=spec), ShardingSettings(), info=info, vocab_size=258, seed=0
            )
    finally:
        teardown()


def test_eval_refuses_a_template_whose_markers_the_model_never_saw(repo):
    from eval.generate import resolve_eval_template

    base = load_tokenizer(ModelConfig(tokenizer=str(repo / BASE)))
    with pytest.raises(
        ValueError, match=r"template 'chatml' writes <\|im_start\|>, <\|im_end\|>, which this"
    ):
        resolve_eval_template(base, "auto")
    chatml = load_tokenizer(ModelConfig(tokenizer=str(repo / CHATML)))
    assert resolve_eval_template(chatml, "auto").name == "tokenizer"
    assert isinstance(resolve_eval_template(chatml, "chatml"), ChatTemplate)
