import pytest
import torch
from harness import pack_examples, tiny_model

from data.collate import collate_preference, collate_sft
from data.packing import (
    best_fit_decreasing,
    collate_packed,
    collate_packed_pairs,
    plan_micro_batches,
)
from data.tokenize import IGNORE_INDEX, PreferenceExample, SFTExample


def _tiny_model():
    return tiny_model().double()


def _ex(n, start=1, masked=0):
    ids = tuple(range(start, start + n))
    labels = (IGNORE_INDEX,) * masked + ids[masked:]
    return SFTExample(ids, labels, f"s{start}", "en")


def test_best_fit_decreasing_hand_worked():
    """Lengths 5,4,3,3,2,1 into rows of 8, longest first, each into the row it fills best:
    5 -> A (free 3); 4 -> B (free 4); 3 -> A (free 0, the tighter fit); 3 -> B (free 1); 2 -> C; 1 -> B."""
    examples = [_ex(n, start=10 * i) for i, n in enumerate([3, 5, 1, 4, 2, 3])]
    rows = pack_examples(examples, max_len=8)
    assert [r.doc_lengths for r in rows] == [(5, 3), (4, 3, 1), (2,)]
    assert rows[0].input_ids == examples[1].input_ids + examples[0].input_ids  # the first 3 (input order)
    assert rows[0].position_ids == [0, 1, 2, 3, 4, 0, 1, 2]
    assert sum(len(r.input_ids) for r in rows) / (len(rows) * 8) == pytest.approx(18 / 24)  # real tokens / slots
    with pytest.raises(ValueError, match="longer than the packing length"):
        pack_examples([_ex(9)], max_len=8)


def test_document_starts_carry_no_label_and_masks_are_kept():
    rows = pack_examples([_ex(4, start=1, masked=2), _ex(3, start=50)], max_len=8)
    assert rows[0].labels == (IGNORE_INDEX, IGNORE_INDEX, 3, 4, IGNORE_INDEX, 51, 52)
    assert rows[0].num_target_tokens == 4


def test_collate_packed_block_diagonal_causal_mask():
    rows = pack_examples([_ex(3, start=1), _ex(2, start=9)], max_len=6)
    batch = collate_packed(rows, pad_id=0)
    mask = batch["packed_mask"][0, 0].int().tolist()
    assert mask == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [0, 0, 0, 1, 0],  # the second document never sees the first
        [0, 0, 0, 1, 1],
    ]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert batch["document_ids"].tolist() == [[0, 0, 0, 1, 1]]


def test_packed_loss_and_gradients_equal_unpacked():
    from losses import sft_loss
    from trainer.forward import model_inputs

    model = _tiny_model()
    gen = torch.Generator().manual_seed(1)
    examples = []
    for n, masked in [(7, 2), (5, 0), (9, 3), (3, 0)]:
        ids = tuple(torch.randint(1, 100, (n,), generator=gen).tolist())
        examples.append(SFTExample(ids, (IGNORE_INDEX,) * masked + ids[masked:], "x", "en"))

    def loss_and_grads(batch):
        model.zero_grad()
        loss_sum, n = sft_loss(model(**model_inputs(model, batch)).logits, batch["labels"])
        loss_sum.backward()
        return float(loss_sum.detach()), int(n), [p.grad.clone() for p in model.parameters()]

    unpacked = loss_and_grads(collate_sft(examples, pad_id=0))
    rows = pack_examples(examples, max_len=12)
    assert len(rows) < len(examples)
    packed = loss_and_grads(collate_packed(rows, pad_id=0))
    assert packed[1] == unpacked[1]
    assert packed[0] == pytest.approx(unpacked[0], rel=1e-5)
    for a, b in zip(packed[2], unpacked[2]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_micro_batches_take_the_fullest_rows_first():
    """Lengths 6,2,5,3,1 into rows of 8: 6 -> A; 5 -> B; 3 -> B (free 0); 2 -> A (free 0); 1 -> C.
    Fullest first (A = 8, B = 8, C = 1; ties keep creation order), two rows per micro-batch."""
    lengths = [6, 2, 5, 3, 1]
    assert best_fit_decreasing(lengths, capacity=8) == [[0, 1], [2, 3], [4]]
    assert plan_micro_batches(lengths, capacity=8, rows_per_micro_batch=2) == [[[0, 1], [2, 3]], [[4]]]
    assert plan_micro_batches([], capacity=8, rows_per_micro_batch=2) == []
    with pytest.raises(ValueError, match="longer than the packing length"):
        best_fit_decreasing([9], capacity=8)


def _pair(prompt, chosen, rejected):
    return PreferenceExample(tuple(prompt), tuple(chosen), tuple(rejected), "s", "en")


def test_packed_pair_layout_by_hand():
    """prompt (1, 2) | chosen (3, 4) | rejected (5,), then a second pair (6) | (7) | (8, 9).

    Positions: the rejected completion continues from the prompt (2), not from the chosen one. Targets: chosen
    3 is predicted at the last prompt token (row position 1), 4 at 2; rejected 5 also at the last prompt token
    (1), never at the chosen token 4 on its left."""
    batch = collate_packed_pairs(
        [[_pair([1, 2], [3, 4], [5]), _pair([6], [7], [8, 9])]], [[10, 11]], pad_id=0
    )
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5, 6, 7, 8, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 2, 0, 1, 1, 2]]
    assert batch["target_positions"].tolist() == [1, 2, 1, 5, 5, 7]
    assert batch["target_ids"].tolist() == [3, 4, 5, 7, 8, 9]
    assert batch["target_segments"].tolist() == [0, 0, 1, 2, 3, 3]
    assert batch["index"].tolist() == [10, 11]
    mask = batch["packed_mask"][0, 0].int().tolist()
    assert mask[:5] == [
        [1, 0, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0, 0],  # chosen sees the prompt
        [1, 1, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 1, 0, 0, 0, 0],  # rejected sees the prompt and itself, never the chosen tokens
    ]
    assert mask[8] == [0, 0, 0, 0, 0, 1, 0, 1, 1]  # the second pair never sees the first


def test_packed_pair_logps_and_gradients_equal_unpacked():
    from trainer.dpo import pair_logps

    model = _tiny_model()
    gen = torch.Generator().manual_seed(2)

    def ids(n):
        return torch.randint(1, 100, (n,), generator=gen).tolist()

    pairs = [_pair(ids(p), ids(c), ids(r)) for p, c, r in [(4, 3, 5), (2, 6, 1), (5, 2, 2), (3, 1, 4)]]

    def logps_and_grads(batch, chunk_size):
        model.zero_grad()
        chosen, rejected = pair_logps(model, batch, chunk_size=chunk_size)
        (chosen.sum() - 2 * rejected.sum()).backward()
        return chosen.detach(), rejected.detach(), [p.grad.clone() for p in model.parameters()]

    unpacked = logps_and_grads(collate_preference(pairs, pad_id=0), None)
    rows = [[pairs[0], pairs[1]], [pairs[2], pairs[3]]]
    for chunk_size in (None, 3):
        packed = logps_and_grads(collate_packed_pairs(rows, [[0, 1], [2, 3]], pad_id=0), chunk_size)
        # log-probs are float32 by design (losses/), so agreement is at float32 precision in a float64 model
        torch.testing.assert_close(packed[0], unpacked[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(packed[1], unpacked[1], rtol=1e-5, atol=1e-6)
        for a, b in zip(packed[2], unpacked[2]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_filler_batches_contribute_nothing():
    from data.batching import PairBatching, SFTBatching
    from trainer.forward import pair_logps
    from trainer.objectives import SFTObjective

    model = _tiny_model()
    sft = SFTBatching(pad_id=0, pack_length=16, rows_per_micro_batch=2)
    filler = sft.filler_batch()
    assert sft.normaliser(filler) == 0
    loss_sum, stats = SFTObjective(chunk_size=4).loss(model, filler)
    loss_sum.backward()
    assert float(loss_sum.detach()) == 0 and stats["num_tokens"] == 0
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    dpo = PairBatching(pad_id=0, pack_length=16)
    chosen, rejected = pair_logps(model, dpo.filler_batch(), chunk_size=4)
    assert chosen.shape == rejected.shape == (0,) and dpo.normaliser(dpo.filler_batch()) == 0
