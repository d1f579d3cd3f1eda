"""The vocabulary a run trains with: the chat template's markers as single tokens, and embedding rows for them.

A base tokenizer (Poro-34B's, the tiny BLOOM stand-in's) has no <|im_start|> or <|im_end|>: rendered as text they
would become several ordinary tokens each, the end of an assistant turn would be no single token that
generation could stop at, and the model would have to learn the markers from their pieces. When the chosen
template writes markers that the tokenizer does not encode as one token, sisu adds them as special tokens.

Their embedding rows (input and, when untied, output) start as the mean of the rows of the tokens the tokenizer
had before: a new marker then starts out as an "average" token instead of a random vector whose logit could be
far off the others (random rows make the first steps' loss on the markers very large). The matrix grows when it
has no spare rows; rows a model already has beyond its tokenizer (padded vocabularies) are reused and set the
same way. Policy and DPO reference get the same rows, so DPO still starts at ln 2.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from data.errors import SisuError

logger = logging.getLogger("sisu")


def add_template_tokens(tokenizer: Any, markers: list[str]) -> list[int]:
    """Add `markers` (strings not yet single tokens) as special tokens; returns their new ids."""
    if not markers:
        return []
    from tokenizers import AddedToken

    before = len(tokenizer)
    tokenizer.add_tokens(
        [AddedToken(m, special=True, normalized=False) for m in markers], special_tokens=True
    )
    ids = [tokenizer.convert_tokens_to_ids(m) for m in markers]
    if len(tokenizer) != before + len(markers) or sorted(ids) != list(range(before, before + len(markers))):
        raise SisuError(
            f"could not add the chat template's markers {markers} to the tokenizer as new tokens"
        )
    logger.info("tokenizer: added the chat template's markers %s as special tokens %s", markers, ids)
    return ids


@torch.no_grad()
def init_new_rows(model: torch.nn.Module, *, vocab_size: int, new_ids: list[int]) -> None:
    """Grow the embeddings to `vocab_size` rows if needed and set the rows of `new_ids` to the mean of the rows
    below the first new id (on a meta-device skeleton only the shapes change)."""
    embedding = model.get_input_embeddings()
    if embedding.num_embeddings < vocab_size:
        model.resize_token_embeddings(vocab_size, mean_resizing=False)
        embedding = model.get_input_embeddings()
    if not new_ids:
        return
    first = min(new_ids)
    index = torch.tensor(new_ids, dtype=torch.long)
    matrices = [embedding.weight]
    head = model.get_output_embeddings()
    if head is not None and head.weight is not embedding.weight:
        matrices.append(head.weight)
    for weight in matrices:
        if weight.device.type == "meta":
            continue
        mean = weight[:first].float().mean(dim=0).to(weight.dtype)
        weight[index.to(weight.device)] = mean.expand(len(new_ids), -1)
