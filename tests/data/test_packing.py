import pytest
import torch

from data.collate import collate_sft
from data.packing import collate_packed, pack_examples, packing_efficiency
from data.tokenize import IGNORE_INDEX, SFTExample


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
    assert packing_efficiency(rows, max_len=8) == pytest.approx(18 / 24)
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
    from trainer.jobs import ModelConfig
    from trainer.model import build_model
    from trainer.tasks import model_inputs

    torch.manual_seed(0)
    model = build_model(
        ModelConfig(
            init_config={
                "model_type": "llama",
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "vocab_size": 100,
            }
        ),
        device="cpu",
    ).double()
    gen = torch.Generator().manual_seed(1)
    examples = []
    for n, masked in [(7, 2), (5, 0), (9, 3), (3, 0)]:
        ids = tuple(torch.randint(1, 100, (n,), generator=gen).tolist())
        examples.append(SFTExample(ids, (IGNORE_INDEX,) * masked + ids[masked:], "x", "en"))

    def loss_and_grads(batch):
        model.zero_grad()
        loss_sum, n = sft_loss(model(**model_inputs(batch)).logits, batch["labels"])
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


def test_pipeline_packs_and_reports_efficiency(tiny_tokenizer, repo):
    from data.config import DataConfig, SourceConfig
    from data.pipeline import build_dataset

    cfg = DataConfig(sources=[SourceConfig(path=str(repo / "data/samples/chat_en.jsonl"))], packing=True)
    bundle = build_dataset(cfg, tokenizer=tiny_tokenizer, max_seq_len=1024, use_cache=False)
    plain = build_dataset(
        DataConfig(sources=cfg.sources), tokenizer=tiny_tokenizer, max_seq_len=1024, use_cache=False
    )
    assert bundle.packed_from == len(plain.examples) == 66
    assert len(bundle.examples) < 66
    # every document start loses its label, which unpacked examples never had (shifted out): totals agree
    assert sum(r.num_target_tokens for r in bundle.examples) == sum(
        e.num_target_tokens for e in plain.examples
    )
    assert any(line.startswith("packing: 66 examples in") for line in bundle.summary_lines())
