import math

import pytest
import torch

from losses import sequence_logps, sft_loss, token_logps


def _logits_from_probs(rows):
    return torch.log(torch.tensor(rows, dtype=torch.float64)).unsqueeze(0)


def test_sft_loss_hand_computed():
    """Position 0 has p = [1/4, 1/2, 1/4] and predicts label 1: -ln(1/2) = ln 2.
    Position 1 has p = [1/4, 1/4, 1/2] and predicts label 0: -ln(1/4) = 2 ln 2.
    The last position predicts nothing (shifted out). Sum = 3 ln 2, two target tokens."""
    logits = _logits_from_probs([[0.25, 0.5, 0.25], [0.25, 0.25, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    labels = torch.tensor([[2, 1, 0]])
    loss_sum, num_tokens = sft_loss(logits, labels)
    assert loss_sum.item() == pytest.approx(3 * math.log(2), rel=1e-6)
    assert num_tokens.item() == 2


def test_sft_loss_ignores_masked_positions():
    """Masking the second target leaves only -ln(1/2) = ln 2 and one token."""
    logits = _logits_from_probs([[0.25, 0.5, 0.25], [0.25, 0.25, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    labels = torch.tensor([[-100, 1, -100]])
    loss_sum, num_tokens = sft_loss(logits, labels)
    assert loss_sum.item() == pytest.approx(math.log(2), rel=1e-6)
    assert num_tokens.item() == 1


def test_sft_loss_all_ignored_is_zero():
    logits = torch.randn(2, 4, 5)
    labels = torch.full((2, 4), -100)
    loss_sum, num_tokens = sft_loss(logits, labels)
    assert loss_sum.item() == 0.0 and num_tokens.item() == 0


def test_sft_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match="expected logits"):
        sft_loss(torch.randn(2, 4, 5), torch.zeros(2, 3, dtype=torch.long))


def test_sequence_logps_sum_and_mean():
    """Sequence 0: ln(1/2) + ln(1/4) = -3 ln 2 (mean -1.5 ln 2). Sequence 1 masks its first target:
    ln(1/2) only... computed from its own probabilities: position 1 predicts label 2 with p = 1/2."""
    probs = [[0.25, 0.5, 0.25], [0.25, 0.25, 0.5], [1 / 3, 1 / 3, 1 / 3]]
    logits = torch.log(torch.tensor([probs, probs], dtype=torch.float64))
    labels = torch.tensor([[0, 1, 0], [0, -100, 2]])
    total = sequence_logps(logits, labels)
    mean = sequence_logps(logits, labels, average=True)
    assert total.tolist() == pytest.approx([-3 * math.log(2), -math.log(2)], rel=1e-6)
    assert mean.tolist() == pytest.approx([-1.5 * math.log(2), -math.log(2)], rel=1e-6)


def test_token_logps_match_log_softmax():
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11)
    labels = torch.randint(0, 11, (3, 7))
    labels[0, 3] = -100
    expected = (
        torch.log_softmax(logits[:, :-1], -1).gather(-1, labels[:, 1:].clamp(min=0).unsqueeze(-1)).squeeze(-1)
    )
    expected = expected * (labels[:, 1:] != -100)
    torch.testing.assert_close(token_logps(logits, labels), expected)


def test_micro_batches_with_global_normalisation_reproduce_full_batch_gradient():
    """Dividing each micro-batch's loss_sum by the *global* token count and summing gradients equals the
    whole-batch mean-over-tokens gradient. Averaging per micro-batch (the transformers#34191 bug) does not."""
    torch.manual_seed(0)
    vocab, width = 13, 6
    embed = torch.nn.Embedding(vocab, width).double()
    head = torch.nn.Linear(width, vocab).double()
    params = list(embed.parameters()) + list(head.parameters())
    input_ids = torch.randint(0, vocab, (4, 9))
    labels = input_ids.clone()
    labels[0, :7] = -100  # very different token counts per sample
    labels[3, :2] = -100

    def grads(loss):
        return torch.autograd.grad(loss, params, retain_graph=True)

    loss_sum, num = sft_loss(head(embed(input_ids)), labels)
    full = grads(loss_sum / num)

    global_tokens = sum(sft_loss(head(embed(input_ids[i : i + 2])), labels[i : i + 2])[1] for i in (0, 2))
    accumulated = [torch.zeros_like(p) for p in params]
    naive = [torch.zeros_like(p) for p in params]
    for i in (0, 2):
        s, n = sft_loss(head(embed(input_ids[i : i + 2])), labels[i : i + 2])
        for acc, g in zip(accumulated, grads(s / global_tokens)):
            acc += g
        for acc, g in zip(naive, grads(s / n / 2)):
            acc += g
    for a, b in zip(accumulated, full):
        torch.testing.assert_close(a, b)
    assert any(not torch.allclose(a, b) for a, b in zip(naive, full))
