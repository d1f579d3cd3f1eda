"""Under FSDP2 on 2 ranks, tied input/output embeddings stay one parameter and receive their full gradient."""

import json
import subprocess
import textwrap

from harness import job_env, launcher

WORKER = textwrap.dedent(
    """
    import copy, json, sys
    import torch
    from losses import sft_loss
    from runtime.distributed import init_distributed, reduce_tensor, teardown
    from runtime.settings import ModelConfig
    from runtime.model import build_model
    from runtime.parallel import shard_model, tied_embeddings

    info = init_distributed()
    torch.manual_seed(0)
    cfg = ModelConfig(init_config={"model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
                                   "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                                   "tie_word_embeddings": True, "vocab_size": 50})
    model = build_model(cfg)
    reference = copy.deepcopy(model)
    input_ids = torch.randint(0, 50, (4, 12), generator=torch.Generator().manual_seed(1))
    labels = input_ids.clone()
    labels[0, :9] = -100

    loss_sum, n = sft_loss(reference(input_ids=input_ids).logits, labels)
    (loss_sum / n).backward()
    expected = reference.get_input_embeddings().weight.grad

    shard_model(model, device=info.device)
    mine = slice(2 * info.rank, 2 * info.rank + 2)
    local_sum, local_n = sft_loss(model(input_ids=input_ids[mine]).logits, labels[mine])
    total = reduce_tensor(local_n.double())
    (local_sum / total).backward()
    weight = model.get_input_embeddings().weight
    grad = weight.grad.full_tensor()
    result = {
        "tied": tied_embeddings(model),
        "same_param": model.get_output_embeddings().weight is weight,
        "max_err": float((grad - expected).abs().max()),
        "scale": float(expected.abs().max()),
        "num_params": sum(1 for _ in model.parameters()),
        "ref_params": sum(1 for _ in reference.parameters()),
    }
    with open(sys.argv[1] + f"/rank{info.rank}.json", "w") as f:
        json.dump(result, f)
    teardown()
    """
)


def test_tied_embeddings_get_full_gradient_under_fsdp2(tmp_path, repo):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    proc = subprocess.run(
        [*launcher(2), str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        env=job_env({"PYTHONPATH": str(repo)}),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        res = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert res["tied"] and res["same_param"]
        assert res["num_params"] == res["ref_params"]  # the tied weight is not duplicated
        assert res["max_err"] <= 1e-5 * res["scale"] + 1e-7, res  # half the gradient would be off by ~50%
