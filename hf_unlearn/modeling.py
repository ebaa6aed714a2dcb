"""Forward passes of causal LMs as the trainers need them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .losses import cross_entropy


def lm_logits(model: nn.Module, batch: Mapping[str, Any], weights: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Logits of ``model`` on ``batch``; ``weights`` ({parameter name: tensor}) replace those parameters.

    Replacing weights through ``functional_call`` evaluates the model at other values of a few
    tensors (an adversary's copy of the target weights) without touching the model's own parameters.
    Labels are not passed on: the model would compute a loss of its own that we do not use.
    """
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch.get("attention_mask"), "use_cache": False}
    if weights is None:
        return model(**inputs).logits
    return functional_call(model, dict(weights), args=(), kwargs=inputs, strict=False).logits


def lm_loss(model: nn.Module, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean next-token cross-entropy of ``batch`` (padding excluded) and the logits."""
    logits = lm_logits(model, batch)
    return cross_entropy(logits, batch["labels"]), logits


def check_pad_token(tokenizer: PreTrainedTokenizerBase | None) -> int:
    """The pad token id, or a clear error: batches of unequal length cannot be built without one."""
    if tokenizer is None:
        raise ValueError("pass the model's tokenizer as processing_class: batches are padded with its pad token")
    if tokenizer.pad_token_id is None:
        raise ValueError(
            f"the tokenizer ({type(tokenizer).__name__}) has no pad token; set one before building the trainer, "
            "for example `tokenizer.pad_token = tokenizer.eos_token` (padding never counts in the loss)"
        )
    return tokenizer.pad_token_id


def load_causal_lm(
    model: PreTrainedModel | str, processing_class: PreTrainedTokenizerBase | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model (loaded if given by name or path) and its tokenizer (loaded from the same place if not given)."""
    if isinstance(model, str):
        name_or_path, model = model, AutoModelForCausalLM.from_pretrained(model)
    else:
        name_or_path = model.config._name_or_path
    if processing_class is None:
        if not name_or_path:
            raise ValueError("the model was not loaded from a path, so pass its tokenizer as processing_class")
        processing_class = AutoTokenizer.from_pretrained(name_or_path)
    check_pad_token(processing_class)
    return model, processing_class
