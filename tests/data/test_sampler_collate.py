import torch

from data.collate import collate_preference, collate_sft
from data.sampler import StepSampler
from data.tokenize import IGNORE_INDEX, PreferenceExample, SFTExample


def _sampler(rank, world=2, n=50, **kw):
    lengths = [(i * 37) % 101 + 1 for i in range(n)]
    return StepSampler(
        lengths, global_batch_size=8, micro_batch_size=2, rank=rank, world_size=world, seed=3, **kw
    )


def test_ranks_are_disjoint_and_cover_each_global_batch():
    s0, s1 = _sampler(0), _sampler(1)
    assert s0.steps_per_epoch == 6 and s0.num_dropped_per_epoch == 2 and s0.grad_accum == 2
    seen = []
    for step in range(s0.steps_per_epoch):
        a = [i for mb in s0.step_indices(0, step) for i in mb]
        b = [i for mb in s1.step_indices(0, step) for i in mb]
        assert not set(a) & set(b)
        assert sorted(a + b) == sorted(s0.epoch_order(0)[step * 8 : (step + 1) * 8].tolist())
        seen += a + b
    assert len(seen) == len(set(seen)) == 48


def test_one_rank_with_accumulation_sees_the_same_global_batches():
    single = StepSampler(
        list(range(50)), global_batch_size=8, micro_batch_size=2, rank=0, world_size=1, seed=3
    )
    pair = [_sampler(r) for r in (0, 1)]
    for step in range(single.steps_per_epoch):
        one = sorted(i for mb in single.step_indices(1, step) for i in mb)
        two = sorted(i for s in pair for mb in s.step_indices(1, step) for i in mb)
        assert one == two


def test_order_is_deterministic_per_seed_and_epoch():
    a, b = _sampler(0), _sampler(0)
    assert a.epoch_order(0).tolist() == b.epoch_order(0).tolist()
    assert a.epoch_order(0).tolist() != a.epoch_order(1).tolist()
    other = StepSampler(a.lengths, global_batch_size=8, micro_batch_size=2, rank=0, world_size=2, seed=4)
    assert other.epoch_order(0).tolist() != a.epoch_order(0).tolist()
    # a fresh sampler (as after a resume) replays step 4 of epoch 1 exactly
    assert _sampler(0).step_indices(1, 4) == a.step_indices(1, 4)


def test_length_grouping_reduces_padding():
    def padding(sampler):
        total = 0
        for step in range(sampler.steps_per_epoch):
            for mb in sampler.step_indices(0, step):
                longest = max(sampler.lengths[i] for i in mb)
                total += sum(longest - sampler.lengths[i] for i in mb)
        return total

    plain, grouped = _sampler(0, n=400), _sampler(0, n=400, group_by_length=True)
    assert padding(grouped) < 0.5 * padding(plain)
    assert sorted(grouped.epoch_order(0).tolist()) == list(range(400))


def _reference_order(lengths, *, seed, epoch, global_batch, shuffle, group_by_length):
    """The order as sisu computed it with Python lists before the lengths became an array (d852205): the array
    version must give the same steps, so that losses stay bitwise identical."""
    n = len(lengths)
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
    else:
        order = list(range(n))
    if not group_by_length:
        return order
    window = global_batch * 16
    grouped = []
    for start in range(0, n, window):
        grouped += sorted(order[start : start + window], key=lambda i: -lengths[i])
    batches = [grouped[i : i + global_batch] for i in range(0, n, global_batch)]
    full = [b for b in batches if len(b) == global_batch]
    rest = [i for b in batches if len(b) < global_batch for i in b]
    if shuffle:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 7)
        full = [full[i] for i in torch.randperm(len(full), generator=gen).tolist()]
    return [i for b in full for i in b] + rest


def test_the_order_is_the_list_implementations_order():
    lengths = [(i * 37) % 23 + 1 for i in range(1000)]  # many ties: the stable sort matters
    for shuffle in (True, False):
        for group_by_length in (True, False):
            for n in (1000, 999, 8, 0):
                sampler = StepSampler(lengths[:n], global_batch_size=8, micro_batch_size=2, rank=0, world_size=1,
                                      seed=5, shuffle=shuffle, group_by_length=group_by_length)  # fmt: skip
                for epoch in (0, 3):
                    expected = _reference_order(lengths[:n], seed=5, epoch=epoch, global_batch=8, shuffle=shuffle,
                                                group_by_length=group_by_length)  # fmt: skip
                    assert sampler.epoch_order(epoch).tolist() == expected, (shuffle, group_by_length, n, epoch)


def test_collate_sft_pads_and_keeps_end_token_labels_when_eos_is_pad():
    pad = 7
    examples = [SFTExample((1, 2, 7), (1, 2, 7), "a", "en"), SFTExample((3, 7), (IGNORE_INDEX, 7), "b", "en")]
    batch = collate_sft(examples, pad_id=pad)
    assert batch["input_ids"].tolist() == [[1, 2, 7], [3, 7, 7]]
    assert batch["labels"].tolist() == [[1, 2, 7], [IGNORE_INDEX, 7, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]


def test_collate_preference_chosen_then_rejected_with_completion_labels():
    ex = PreferenceExample((1, 2), (3, 9), (4, 5, 9), "p", "en")
    batch = collate_preference([ex], pad_id=9)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 9, 9], [1, 2, 4, 5, 9]]
    assert batch["labels"].tolist() == [
        [IGNORE_INDEX, IGNORE_INDEX, 3, 9, IGNORE_INDEX],
        [IGNORE_INDEX, IGNORE_INDEX, 4, 5, 9],
    ]
    assert batch["attention_mask"].sum(1).tolist() == [4, 5]
    assert batch["input_ids"].dtype == torch.long
