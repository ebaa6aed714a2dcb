"""Forward passes of causal LMs as the trainers need them."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .losses import cross_entropy


@dataclass
class LMOutputs:
    logits: torch.Tensor  # (batch, seq, vocab)
    hidden_states: tuple[torch.Tensor, ...] | None = None  # embeddings, then each layer's output


def lm_outputs(
    model: nn.Module,
    batch: Mapping[str, Any],
    weights: Mapping[str, torch.Tensor] | None = None,
    output_hidden_states: bool = False,
) -> LMOutputs:
    """Outputs of ``model`` on ``batch``; ``weights`` ({parameter name: tensor}) replace those parameters.

    Replacing weights through ``functional_call`` evaluates the model at other values of a few
    tensors (an adversary's copy of the target weights, the original weights) without touching the
    model's own parameters. Labels are not passed on: the model would compute a loss we do not use.
    """
    inputs = {
        "input_ids": batch["input_ids"],
        "attention_mask": batch.get("attention_mask"),
        "use_cache": False,
        "output_hidden_states": output_hidden_states,
    }
    if weights is None:
        outputs = model(**inputs)
    else:
        outputs = functional_call(model, dict(weights), args=(), kwargs=inputs, strict=False)
    return LMOutputs(outputs.logits, outputs.hidden_states if output_hidden_states else None)


def lm_loss(model: nn.Module, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean next-token cross-entropy of ``batch`` (padding excluded) and the logits."""
    logits = lm_outputs(model, batch).logits
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
        name_or_path, model = model, AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)  # trained: see check_trained_precision
    else:
        name_or_path = model.config._name_or_path
    if processing_class is None:
        if not name_or_path:
            raise ValueError("the model was not loaded from a path, so pass its tokenizer as processing_class")
        processing_class = AutoTokenizer.from_pretrained(name_or_path)
    check_pad_token(processing_class)
    return model, processing_class


class ForwardStopped(Exception):
    """Raised by ``stop_after`` to end a forward pass early."""


@contextmanager
def stop_after(module: nn.Module) -> Iterator[None]:
    """Inside the block, a forward pass stops (``ForwardStopped``) once ``module`` has run.

    Methods that only need early layers (CIR's MLP outputs and layer-12 representations) skip the
    rest of the network and the output head, a large share of the compute.
    """

    def hook(module, args, output):
        raise ForwardStopped

    handle = module.register_forward_hook(hook)
    try:
        yield
    except ForwardStopped:
        pass
    finally:
        handle.remove()


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks in order (``model.layers``, ``transformer.h``, ``gpt_neox.layers``, ...)."""
    count = model.config.num_hidden_layers
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return list(module)
    raise ValueError(f"found no list of {count} transformer blocks in {type(model).__name__}")


def module_output(model: nn.Module, batch: Mapping[str, Any], module: nn.Module, weights: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """The output of ``module`` (a block's hidden states) on ``batch``, without running the layers after it."""
    captured = []
    handle = module.register_forward_hook(lambda mod, args, output: captured.append(output[0] if isinstance(output, tuple) else output))
    try:
        with stop_after(module):
            lm_outputs(model, batch, weights)
    finally:
        handle.remove()
    return captured[0]


def weights_digest(model: nn.Module) -> hashlib._Hash:
    """A running SHA-256 of every tensor in the model's state dict, bit for bit (feed it more to key other inputs)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest


@contextmanager
def peft_without_deprecation_warning() -> Iterator[None]:
    """PEFT reads transformers 5's deprecated ``is_gradient_checkpointing`` when it wraps a model: a FutureWarning
    per adapter, about code that is not ours."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def with_lora_adapter(model: nn.Module, lora_config: Any) -> nn.Module:
    """``peft.get_peft_model`` (``peft_without_deprecation_warning``)."""
    from peft import get_peft_model

    with peft_without_deprecation_warning():
        return get_peft_model(model, lora_config)
