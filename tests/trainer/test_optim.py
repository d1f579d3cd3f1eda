import math

import pytest
import torch

from trainer.jobs import OptimConfig
from trainer.optim import lr_at, param_groups


def test_no_weight_decay_on_norms_and_biases():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.Embedding(10, 4))
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[2].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model[0].bias), id(model[1].weight), id(model[1].bias)}


def test_warmup_then_cosine():
    """total 20, warmup_ratio 0.1 -> 2 warmup steps: lr/2, lr; then cosine over the remaining 18 steps."""
    cfg = OptimConfig(lr=1.0, warmup_ratio=0.1, scheduler="cosine")
    lrs = [lr_at(s, total_steps=20, cfg=cfg) for s in range(20)]
    assert lrs[:3] == pytest.approx([0.5, 1.0, 1.0])
    # step 11 is halfway through the 18 decay steps: 0.5 * (1 + cos(pi * 9/18)) = 0.5
    assert lrs[11] == pytest.approx(0.5)
    assert lrs[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 17 / 18)))
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))
    assert lrs[-1] > 0  # the last step still learns


def test_linear_and_constant_and_floor():
    lin = OptimConfig(lr=2.0, warmup_ratio=0.0, scheduler="linear", min_lr_ratio=0.5)
    assert lr_at(0, total_steps=10, cfg=lin) == pytest.approx(2.0)
    assert lr_at(5, total_steps=10, cfg=lin) == pytest.approx(1.0 + 1.0 * 0.5)
    const = OptimConfig(lr=3.0, warmup_ratio=0.5, scheduler="constant")
    assert [lr_at(s, total_steps=4, cfg=const) for s in range(4)] == pytest.approx([1.5, 3.0, 3.0, 3.0])
