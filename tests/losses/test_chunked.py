import pytest
import torch

from losses import sequence_logps, sft_loss
from losses.chunked import chunked_sequence_logps, chunked_sft_loss, chunked_token_logps


def _setup(dtype=torch.float64):
    torch.manual_seed(0)
    hidden = torch.randn(3, 7, 5, dtype=dtype, requires_grad=True)
    weight = torch.randn(11, 5, dtype=dtype, requires_grad=True)
    labels = torch.randint(0, 11, (3, 7))
    labels[0, :4] = -100  # a masked prompt
    labels[2, 5:] = -100  # padding
    return hidden, weight, labels


@pytest.mark.parametrize("chunk_size", [1, 3, 1000])
def test_chunked_equals_full_logits_values_and_gradients(chunk_size):
    """sum_t log softmax(W h_t)[y_{t+1}] computed in chunks equals the full computation, and so do the gradients."""
    hidden, weight, labels = _setup()
    full = sequence_logps(hidden @ weight.t(), labels)
    g_full = torch.autograd.grad(full.sum(), (hidden, weight))
    chunked = chunked_sequence_logps(hidden, weight, labels, chunk_size=chunk_size)
    g_chunked = torch.autograd.grad(chunked.sum(), (hidden, weight))
    torch.testing.assert_close(chunked.double(), full.double(), rtol=1e-6, atol=1e-6)
    for a, b in zip(g_chunked, g_full):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("chunk_size", [1, 4, 1000])
def test_chunked_sft_loss_matches_sft_loss_values_and_gradients(chunk_size):
    """The fused loss computes its gradients in the forward pass; scaled by any upstream gradient (here 3, as a
    normalisation would), they equal those of the full-logits sft_loss."""
    hidden, weight, labels = _setup()
    loss, n = sft_loss(hidden @ weight.t(), labels)
    g_full = torch.autograd.grad(3.0 * loss, (hidden, weight))
    c_loss, c_n = chunked_sft_loss(hidden, weight, labels, chunk_size=chunk_size)
    assert int(n) == int(c_n) == int((labels[:, 1:] != -100).sum())
    torch.testing.assert_close(c_loss.double(), loss.double(), rtol=1e-6, atol=1e-6)
    g_fused = torch.autograd.grad(3.0 * c_loss, (hidden, weight))
    for a, b in zip(g_fused, g_full):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_chunked_sft_loss_gradient_of_one_input_and_without_targets():
    hidden, weight, labels = _setup()
    frozen = weight.detach()
    (g_hidden,) = torch.autograd.grad(chunked_sft_loss(hidden, frozen, labels, chunk_size=2)[0], (hidden,))
    (g_ref,) = torch.autograd.grad(sft_loss(hidden @ frozen.t(), labels)[0], (hidden,))
    torch.testing.assert_close(g_hidden, g_ref, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        value, _ = chunked_sft_loss(hidden, weight, labels, chunk_size=2)
    torch.testing.assert_close(value.double(), sft_loss(hidden @ weight.t(), labels)[0].detach().double())
    none, n = chunked_sft_loss(hidden, weight, torch.full_like(labels, -100), chunk_size=2)
    assert float(none.detach()) == 0.0 and int(n) == 0
    grads = torch.autograd.grad(none, (hidden, weight))
    assert not any(g.any() for g in grads)


def test_gradcheck_float64():
    torch.manual_seed(1)
    hidden = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 9, (6,))
    # the function computes in float32 internally; compare against a float64 reference with a loose tolerance
    out = chunked_token_logps(hidden, weight, targets, chunk_size=4)
    ref = torch.log_softmax(hidden @ weight.t(), -1).gather(-1, targets[:, None]).squeeze(-1)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    g = torch.autograd.grad(out.sum(), (hidden, weight))
    g_ref = torch.autograd.grad(ref.sum(), (hidden, weight))
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_bad_shapes():
    with pytest.raises(ValueError, match="expected hidden"):
        chunked_token_logps(torch.randn(2, 3), torch.randn(4, 5), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_token_logps(
            torch.randn(2, 3), torch.randn(4, 3), torch.zeros(2, dtype=torch.long), chunk_size=0
        )
