"""Attention per architecture: BLOOM/ALiBi on SDPA equals transformers' eager BLOOM, packed rows equal unpacked
ones for ALiBi and for eager attention, and the bias is built once per forward."""

from __future__ import annotations

import pytest
import torch
from harness import TINY_BLOOM, TINY_LLAMA, pack_examples, tiny_model

from data.batching import with_label_positions
from data.collate import collate_preference, collate_sft
from data.packing import collate_packed, collate_packed_pairs
from data.tokenize import IGNORE_INDEX, PreferenceExample, SFTExample
from losses import sft_loss
from runtime import attention
from runtime.attention import check_packing_supported
from trainer.forward import model_inputs, pair_logps

BLOOM, LLAMA = TINY_BLOOM, TINY_LLAMA


def _model(spec, implementation="auto"):
    return tiny_model(spec, attn_implementation=implementation)


def _examples(seed=1):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for n, masked in [(7, 2), (5, 0), (9, 3), (3, 0)]:
        ids = tuple(torch.randint(1, 100, (n,), generator=gen).tolist())
        out.append(SFTExample(ids, (IGNORE_INDEX,) * masked + ids[masked:], "x", "en"))
    return out


def _loss_and_grads(model, batch):
    model.zero_grad()
    loss_sum, n = sft_loss(model(**model_inputs(model, batch)).logits, batch["labels"])
    loss_sum.backward()
    return float(loss_sum.detach()), int(n), [p.grad.clone() for p in model.parameters()]


def test_alibi_slopes_match_transformers():
    from transformers.models.bloom.modeling_bloom import _get_alibi_slopes

    for heads in (1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32, 48, 56, 64, 71, 112):
        assert torch.equal(attention.alibi_slopes(heads), _get_alibi_slopes(heads, torch.device("cpu")))
    # the paper's 8-head example: 1/2, 1/4, ..., 1/256
    assert attention.alibi_slopes(8).tolist() == [2.0**-i for i in range(1, 9)]


def test_implementation_is_chosen_per_architecture():
    assert attention.resolve_attention("bloom", "auto") == ("eager", True)
    assert attention.resolve_attention("bloom", "sdpa") == ("eager", True)
    assert attention.resolve_attention("bloom", "eager") == ("eager", False)
    assert attention.resolve_attention("llama", "auto") == ("sdpa", False)
    assert attention.resolve_attention("llama", "eager") == ("eager", False)
    with pytest.raises(ValueError, match="not available for bloom"):
        attention.resolve_attention("bloom", "flash_attention_2")
    assert attention.attention_name(_model(BLOOM)) == "alibi_sdpa"
    assert attention.attention_name(_model(BLOOM, "eager")) == "eager"
    assert attention.attention_name(_model(LLAMA)) == "sdpa"


@pytest.mark.parametrize("padding", ["right", "left"])
def test_bloom_sdpa_equals_transformers_eager(padding):
    sdpa, eager = _model(BLOOM), _model(BLOOM, "eager")
    assert type(sdpa.transformer.h[0].self_attention) is attention.AlibiSDPAAttention
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(1, 100, (3, 11), generator=gen)
    mask = torch.ones_like(ids)
    if padding == "right":
        mask[1, 7:] = 0
        mask[2, 4:] = 0
    else:
        mask[1, :4] = 0
        mask[2, :7] = 0
    with torch.no_grad():
        a = sdpa(input_ids=ids, attention_mask=mask).logits
        b = eager(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(a[mask.bool()], b[mask.bool()], rtol=1e-5, atol=1e-5)
    if padding == "left":  # greedy decoding with the KV cache picks the same tokens
        kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
        out_a = sdpa.generate(input_ids=ids, attention_mask=mask, **kwargs)
        out_b = eager.generate(input_ids=ids, attention_mask=mask, **kwargs)
        assert torch.equal(out_a, out_b)


@pytest.mark.parametrize(
    "spec,implementation",
    [(BLOOM, "auto"), (BLOOM, "eager"), (LLAMA, "eager"), (LLAMA, "auto")],
    ids=["bloom-sdpa", "bloom-eager", "llama-eager", "llama-sdpa"],
)
def test_packed_sft_loss_and_gradients_equal_unpacked(spec, implementation):
    """Eager attention adds the mask: a boolean block-diagonal mask would let documents see each other."""
    model = _model(spec, implementation)
    check_packing_supported(model)
    examples = _examples()
    unpacked = _loss_and_grads(model, collate_sft(examples, pad_id=0))
    rows = pack_examples(examples, max_len=12)
    assert len(rows) < len(examples)
    packed = _loss_and_grads(model, collate_packed(rows, pad_id=0))
    assert packed[1] == unpacked[1]
    assert packed[0] == pytest.approx(unpacked[0], rel=1e-5)
    for a, b in zip(packed[2], unpacked[2]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_boolean_mask_given_to_eager_attention_would_mix_documents():
    """The failure the additive mask prevents: the same packed batch with its boolean mask, forced through."""
    model = _model(LLAMA, "eager")
    examples = _examples()
    unpacked = _loss_and_grads(model, collate_sft(examples, pad_id=0))
    batch = collate_packed(pack_examples(examples, max_len=12), pad_id=0)
    model.zero_grad()
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["packed_mask"], position_ids=batch["position_ids"]
    ).logits
    wrong = float(sft_loss(logits, batch["labels"])[0].detach())
    assert abs(wrong - unpacked[0]) / unpacked[0] > 1e-4  # packed == unpacked holds to 1e-7


@pytest.mark.parametrize("implementation", ["auto", "eager"])
def test_bloom_packed_pairs_equal_unpacked(implementation):
    model = _model(BLOOM, implementation)
    gen = torch.Generator().manual_seed(2)

    def ids(n):
        return tuple(torch.randint(1, 100, (n,), generator=gen).tolist())

    pairs = [
        PreferenceExample(ids(p), ids(c), ids(r), "x", "en") for p, c, r in [(5, 4, 6), (3, 7, 2), (6, 2, 2)]
    ]
    unpacked = with_label_positions(collate_preference(pairs, pad_id=0))
    with torch.no_grad():
        chosen_u, rejected_u = pair_logps(model, unpacked, chunk_size=4)
        packed = collate_packed_pairs([pairs[:2], pairs[2:]], [[0, 1], [2]], pad_id=0)
        chosen_p, rejected_p = pair_logps(model, packed, chunk_size=4)
    torch.testing.assert_close(chosen_p, chosen_u, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rejected_p, rejected_u, rtol=1e-5, atol=1e-5)


def test_bias_is_built_once_per_forward_and_aligned(monkeypatch):
    model = _model(BLOOM)
    calls = []
    original = attention.build_bias

    def counting(*args, **kwargs):
        bias = original(*args, **kwargs)
        calls.append(bias)
        return bias

    monkeypatch.setattr(attention, "build_bias", counting)
    batch = collate_packed(pack_examples(_examples(), max_len=12), pad_id=0)
    loss = sft_loss(model(**model_inputs(model, batch)).logits, batch["labels"])[0]
    loss.backward()
    assert len(calls) == 1  # two layers, one bias
    bias = calls[0]
    assert bias.shape == (2, 4, 12, 12) and bias.stride(-2) % 16 == 0


def test_slopes_are_built_once_per_device_not_per_forward(monkeypatch):
    """Building the slopes copies host numbers to the device (a stream sync on GPU): once per device and head
    count, whatever the mask (packed 4D or padded 2D) and however many forwards."""
    model = _model(BLOOM)
    built = []
    original = attention.alibi_slopes

    def counting(*args, **kwargs):
        built.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(attention, "alibi_slopes", counting)
    attention._slopes_on.cache_clear()
    packed = collate_packed(pack_examples(_examples(), max_len=12), pad_id=0)
    padded = collate_sft(_examples(), pad_id=0)
    for batch in (packed, padded, packed, padded):
        model(**model_inputs(model, batch))
    assert built == [(4,)]
    # with a 2D mask the bias is transformers' own, bit for bit
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1]])
    for dtype in (torch.float32, torch.bfloat16):
        ours = model.transformer.build_alibi_tensor(mask, 4, dtype)
        assert torch.equal(ours, build_alibi_tensor(mask, 4, dtype))


def test_packing_needs_restartable_positions():
    check_packing_supported(_model(LLAMA))
    check_packing_supported(_model(BLOOM))  # prepared by sisu: positions come from the mask
    from transformers import BloomConfig, BloomForCausalLM

    raw = BloomForCausalLM(BloomConfig(vocab_size=50, hidden_size=16, n_layer=1, n_head=2))
    with pytest.raises(
        ValueError, match="data.packing needs a model that takes position_ids or an ALiBi model"
    ):
        check_packing_supported(raw)


def test_bias_is_kept_for_the_backward_and_released_without_gradients():
    """Training keeps the bias until the next forward (activation checkpointing recomputes the layers in the
    backward and reuses it); eval, generation and the DPO reference drop it when their forward ends."""
    model = _model(BLOOM)
    cache = model.transformer.h[0].self_attention.bias_cache
    assert all(block.self_attention.bias_cache is cache for block in model.transformer.h)
    batch = collate_packed(pack_examples(_examples(), max_len=12), pad_id=0)
    model(**model_inputs(model, batch))
    assert cache.bias is not None
    with torch.no_grad():
        model(**model_inputs(model, batch))
    assert cache.bias is None
