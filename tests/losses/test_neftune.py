import math

import pytest
import torch

from losses import neftune_noise


def _noise(embeds, **kwargs):
    return neftune_noise(embeds, **kwargs) - embeds


def test_bound_and_mean_magnitude_use_real_length():
    """|noise| <= alpha / sqrt(L d) with L the real (unpadded) length; E|U(-1,1)| = 1/2 of the bound."""
    batch, seq, width, alpha = 2, 64, 256, 5.0
    embeds = torch.zeros(batch, seq, width)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[1, 16:] = 0  # sample 1 has 16 real tokens
    noise = _noise(embeds, alpha=alpha, attention_mask=mask, generator=torch.Generator().manual_seed(0))
    bound0 = alpha / math.sqrt(64 * width)
    bound1 = alpha / math.sqrt(16 * width)
    assert noise[0].abs().max() <= bound0 * (1 + 1e-6)
    assert noise[1, :16].abs().max() <= bound1 * (1 + 1e-6)
    # a padded-length scale would cap sample 1 at bound0; its real scale is twice as large
    assert noise[1, :16].abs().max() > 1.9 * bound0
    assert noise[0].abs().mean().item() == pytest.approx(bound0 / 2, rel=0.02)
    assert noise[1, :16].abs().mean().item() == pytest.approx(bound1 / 2, rel=0.02)


def test_padding_gets_no_noise():
    embeds = torch.randn(2, 10, 8)
    mask = torch.tensor([[1] * 10, [1] * 4 + [0] * 6])
    noise = _noise(embeds, alpha=5.0, attention_mask=mask)
    assert torch.all(noise[1, 4:] == 0)
    assert torch.all(noise[1, :4] != 0)


def test_per_document_lengths_in_packed_rows():
    """Row [doc0 x 30, doc1 x 10, pad x 4]: doc0 tokens bounded by alpha/sqrt(30 d), doc1 by alpha/sqrt(10 d)."""
    width, alpha = 512, 5.0
    doc_ids = torch.tensor([[0] * 30 + [1] * 10 + [-1] * 4])
    noise = _noise(
        torch.zeros(1, 44, width),
        alpha=alpha,
        document_ids=doc_ids,
        generator=torch.Generator().manual_seed(1),
    )
    b0, b1 = alpha / math.sqrt(30 * width), alpha / math.sqrt(10 * width)
    assert noise[0, :30].abs().max() <= b0 * (1 + 1e-6)
    assert noise[0, 30:40].abs().max() <= b1 * (1 + 1e-6)
    assert noise[0, 30:40].abs().max() > 0.95 * b1  # not scaled by the row length 44 or 40
    assert noise[0, :30].abs().mean().item() == pytest.approx(b0 / 2, rel=0.03)
    assert torch.all(noise[0, 40:] == 0)


def test_reproducible_with_generator():
    embeds = torch.randn(2, 5, 4)
    a = neftune_noise(embeds, alpha=5.0, generator=torch.Generator().manual_seed(7))
    b = neftune_noise(embeds, alpha=5.0, generator=torch.Generator().manual_seed(7))
    c = neftune_noise(embeds, alpha=5.0, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_alpha_zero_is_identity_and_dtype_kept():
    embeds = torch.randn(1, 3, 4, dtype=torch.bfloat16)
    out = neftune_noise(embeds, alpha=0.0)
    assert out.dtype == torch.bfloat16 and torch.equal(out, embeds)


def test_gradient_flows_to_embeddings():
    embeds = torch.randn(1, 3, 4, requires_grad=True)
    neftune_noise(embeds, alpha=5.0).sum().backward()
    torch.testing.assert_close(embeds.grad, torch.ones_like(embeds))
