import math

import pytest
import torch

from losses import dpo_loss

# One pair with policy chosen/rejected = -1, -2 and reference chosen/rejected = -1.5, -1.5:
# d = (-1 - -2) - (-1.5 - -1.5) = 1.
PAIR = [torch.tensor([v], dtype=torch.float64) for v in (-1.0, -2.0, -1.5, -1.5)]


def _softplus(x):
    return math.log1p(math.exp(x))


def test_sigmoid_hand_computed():
    """beta = 0.5, d = 1: -log sigma(0.5) = log(1 + e^-0.5) = 0.474077."""
    losses, chosen, rejected = dpo_loss(*PAIR, beta=0.5)
    assert losses.item() == pytest.approx(0.4740769841801067, rel=1e-9)
    # rewards: beta (policy - reference) = 0.5 * 0.5 and 0.5 * -0.5
    assert chosen.item() == pytest.approx(0.25) and rejected.item() == pytest.approx(-0.25)


def test_sigmoid_label_smoothing_hand_computed():
    """eps = 0.1: 0.9 * log(1 + e^-0.5) + 0.1 * log(1 + e^0.5) = 0.9 * 0.474077 + 0.1 * 0.974077."""
    losses, _, _ = dpo_loss(*PAIR, beta=0.5, label_smoothing=0.1)
    assert losses.item() == pytest.approx(0.9 * 0.4740769841801067 + 0.1 * 0.9740769841801067, rel=1e-9)


def test_hinge_hand_computed():
    """relu(1 - beta d) = relu(1 - 0.5) = 0.5; with beta = 2: relu(1 - 2) = 0."""
    assert dpo_loss(*PAIR, beta=0.5, loss_type="hinge")[0].item() == pytest.approx(0.5)
    assert dpo_loss(*PAIR, beta=2.0, loss_type="hinge")[0].item() == 0.0


def test_ipo_hand_computed():
    """(d - 1/(2 beta))^2 with beta = 0.25: (1 - 2)^2 = 1; with beta = 0.5: (1 - 1)^2 = 0."""
    assert dpo_loss(*PAIR, beta=0.25, loss_type="ipo")[0].item() == pytest.approx(1.0)
    assert dpo_loss(*PAIR, beta=0.5, loss_type="ipo")[0].item() == pytest.approx(0.0)


def test_robust_hand_computed():
    """eps = 0.1, beta = 0.5: (0.9 * 0.474077 - 0.1 * 0.974077) / 0.8 = 0.411577."""
    losses, _, _ = dpo_loss(*PAIR, beta=0.5, loss_type="robust", label_smoothing=0.1)
    expected = (0.9 * _softplus(-0.5) - 0.1 * _softplus(0.5)) / 0.8
    assert losses.item() == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(0.4115770, rel=1e-6)


def test_sigmoid_is_ln2_when_policy_equals_reference():
    logps = torch.randn(5, 2, dtype=torch.float64)
    losses, chosen, rejected = dpo_loss(logps[:, 0], logps[:, 1], logps[:, 0], logps[:, 1], beta=0.05)
    torch.testing.assert_close(losses, torch.full((5,), math.log(2), dtype=torch.float64))
    assert torch.all(chosen == 0) and torch.all(rejected == 0)


def test_rewards_are_detached():
    p = [t.clone().requires_grad_(True) for t in PAIR]
    losses, chosen, rejected = dpo_loss(*p, beta=0.1)
    assert losses.requires_grad and not chosen.requires_grad and not rejected.requires_grad


@pytest.mark.parametrize(
    "loss_type,eps", [("sigmoid", 0.0), ("sigmoid", 0.2), ("hinge", 0.0), ("ipo", 0.0), ("robust", 0.2)]
)
def test_gradcheck(loss_type, eps):
    torch.manual_seed(0)
    # hinge is not differentiable at beta d = 1; random inputs avoid the kink.
    inputs = tuple(torch.randn(4, dtype=torch.float64, requires_grad=True) for _ in range(4))

    def fn(*args):
        return dpo_loss(*args, beta=0.3, loss_type=loss_type, label_smoothing=eps)[0]

    assert torch.autograd.gradcheck(fn, inputs)


def test_sigmoid_gradient_sign_pushes_chosen_up():
    p = [t.clone().requires_grad_(True) for t in PAIR]
    dpo_loss(*p, beta=0.5)[0].sum().backward()
    assert p[0].grad.item() < 0 < p[1].grad.item()  # descent raises chosen, lowers rejected
    assert p[2].grad.item() > 0 > p[3].grad.item()


def test_bad_arguments():
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(*PAIR, beta=0.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(*PAIR, beta=0.1, label_smoothing=0.5)
    with pytest.raises(ValueError, match="loss_type"):
        dpo_loss(*PAIR, beta=0.1, loss_type="kto")
