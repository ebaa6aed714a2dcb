"""Forward passes of causal LMs as the trainers need them (loading them: ``models``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule
from torch.func import functional_call

from .gradients import full_value
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
    elif is_sharded(model):
        with torch.no_grad(), weights_written(model, weights):  # no gradient: it would be taken after the weights return
            outputs = model(**inputs)
    else:
        outputs = functional_call(model, dict(weights), args=(), kwargs=inputs, strict=False)
    return LMOutputs(outputs.logits, outputs.hidden_states if output_hidden_states else None)


def is_sharded(model: nn.Module) -> bool:
    """Whether FSDP2 shards ``model``'s parameters (each process holds a slice of every tensor, as a ``DTensor``)."""
    return any(isinstance(module, FSDPModule) for module in model.modules())


@contextmanager
def weights_written(model: nn.Module, weights: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """Inside the block, the parameters named in ``weights`` hold those values; their own are put back after it.

    The sharded counterpart of ``functional_call``: FSDP2 all-gathers each layer's parameters from its
    shards at every forward (and again for the backward), so the values are written into each process's
    shard (``weights`` are shards of the same layout: adversary, original weights) and never held whole.
    The backward pass of a forward taken inside the block must be taken inside it too. The root module
    keeps its gathered parameters after a forward (FSDP2 skips an all-gather before the backward that
    follows), so every module is resharded after each write: the next forward gathers the new values.
    """
    params = [model.get_parameter(name) for name in weights]
    saved = [p.detach().clone() for p in params]
    try:
        with torch.no_grad():
            for p, w in zip(params, weights.values()):  # one by one: DTensor has no _foreach_copy_
                p.copy_(w)
        reshard(model)
        yield
    finally:
        with torch.no_grad():
            for p, value in zip(params, saved):
                p.copy_(value)
        reshard(model)


def reshard(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


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


def stop_after_unless_sharded(model: nn.Module, module: nn.Module) -> AbstractContextManager:
    """``stop_after(module)``, or nothing when FSDP2 shards ``model``: a forward stopped midway would skip FSDP's
    hooks after ``module`` (its layer left gathered, the root's forward unfinished), so it runs to the end."""
    return nullcontext() if is_sharded(model) else stop_after(module)


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
        with stop_after_unless_sharded(model, module):
            lm_outputs(model, batch, weights)
    finally:
        handle.remove()
    return captured[0]


def weights_digest(model: nn.Module) -> hashlib._Hash:
    """A running SHA-256 of every tensor in the model's state dict, bit for bit (feed it more to key other inputs).
    Sharded tensors (FSDP2) are gathered whole, so every process must call it."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(full_value(tensor.detach()).cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest
