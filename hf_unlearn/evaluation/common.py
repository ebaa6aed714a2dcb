"""Running an evaluation over examples on one or many processes with identical results."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from ..data.collator import LMCollator

T = TypeVar("T")


def over_processes(score_batch: Callable[[list[int]], list[T]], num_examples: int, batch_size: int, desc: str = "scoring") -> list[T]:
    """Per-example results for ``range(num_examples)``, each process scoring a contiguous share.

    The shares are gathered back in order, so every process returns the same list that one process
    scoring everything would (up to floating-point noise from different batch compositions).
    """
    state = PartialState()
    with state.split_between_processes(list(range(num_examples))) as indices:
        starts = range(0, len(indices), batch_size)
        batches = tqdm(starts, desc=desc, unit="batch", leave=False, disable=not state.is_main_process or len(starts) < 2)
        local = [result for start in batches for result in score_batch(indices[start : start + batch_size])]
        # Every process runs as many batches as the one with the largest share: a sharded model (FSDP2) gathers
        # its weights from every process at each forward, so a process that stopped early would leave the others
        # waiting. The extra batch repeats one example and is discarded; it takes no wall time, as the process
        # with the largest share runs that long anyway.
        most = math.ceil(math.ceil(num_examples / state.num_processes) / batch_size)
        for _ in range(most - len(starts)):
            score_batch(indices[-1:] or [0])
    return gather_object(local) if state.num_processes > 1 else local


@torch.no_grad()
def greedy_new_tokens(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, token_lists: Sequence[Sequence[int]], max_new_tokens: int, synced_gpus: bool = False
) -> torch.Tensor:  # fmt: skip
    """The ``max_new_tokens`` greedy tokens after each of ``token_lists``, generated as one left-padded, masked batch (a
    token is one forward for all of them; positions follow the mask). A sequence that ends early is padded after it.
    ``synced_gpus``: under FSDP2 each token is a forward that needs every process, until all of them are done."""
    pad = next((token for token in (tokenizer.pad_token_id, tokenizer.eos_token_id) if token is not None), 0)  # masked: any id
    device = next(model.parameters()).device
    width = max(len(tokens) for tokens in token_lists)
    ids = torch.tensor([[pad] * (width - len(tokens)) + list(tokens) for tokens in token_lists], device=device)
    mask = torch.tensor([[0] * (width - len(tokens)) + [1] * len(tokens) for tokens in token_lists], device=device)
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad, synced_gpus=synced_gpus)
    return out[:, width:]


@torch.no_grad()
def forward_examples(model: nn.Module, examples: Sequence[dict[str, Any]], pad_token_id: int) -> tuple[dict, torch.Tensor]:
    """Pad ``examples`` (``input_ids``, optional ``labels``) into a batch on the model's device; return it and fp32 logits."""
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in LMCollator(pad_token_id)(list(examples)).items()}
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    return batch, logits.float()


class eval_mode:
    """Context manager: the model in eval mode inside, its previous mode restored after."""

    def __init__(self, model: nn.Module):
        self.model, self.was_training = model, model.training

    def __enter__(self) -> nn.Module:
        self.model.eval()
        return self.model

    def __exit__(self, *exc) -> None:
        self.model.train(self.was_training)
