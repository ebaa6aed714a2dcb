"""Forward passes of causal LMs as the trainers need them (loading them: ``models``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

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
