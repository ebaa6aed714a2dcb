"""Gradient transforms and the alternative weights a procedure evaluates the model at.

Each part is a few lines over the pure functions of ``gradients.py`` and owns the state it needs,
nothing more (saved in checkpoints through the procedure that holds it):

- ``RetainMomentum``: the retain direction, an EMA of retain gradients (a buffer only when beta > 0).
- ``DisruptionMask``: keep the forget gradient where its sign agrees with the retain direction.
- ``WagleMask``: WAGLE's static mask of the weights allowed to change.
- ``Adversary``: a copy of the target weights that relearns the forget set (meta-learning).
- ``Reference``: the original model's outputs without a second model.
- ``representation_anchor``: TAR's representation-matching term of the retain loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..forward import LMOutputs, lm_outputs
from ..gradients import at_least_float32, disruption_mask, ema_, full_value, top_fraction_mask
from ..losses import representation_distance


def to_device(value, device: torch.device | str):
    """``value`` with every tensor in it (nested in lists, tuples, dicts) moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    return value


class RetainMomentum:
    """The retain direction: ``ema = beta*ema + (1-beta)*g_r`` (fp32), or the retain gradient itself when
    beta is 0, which then needs no buffer (an fp32 copy of every target weight)."""

    def __init__(self, momentum: float):
        self.momentum = momentum
        self.ema: list[torch.Tensor] | None = None

    def __call__(self, retain_grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        grads = [at_least_float32(g) for g in retain_grads]
        if self.momentum == 0:
            return grads
        if self.ema is None:
            self.ema = [torch.zeros_like(g) for g in grads]
        ema_(self.ema, grads, self.momentum)
        return self.ema


class DisruptionMask:
    """Disruption Masking (MUDMAN): descend the forget gradient only where that also descends the retain loss."""

    def __call__(self, grads: Sequence[torch.Tensor], retain_direction: Sequence[torch.Tensor]) -> torch.Tensor:
        """Zero, in place, every element of ``grads`` whose sign differs from the retain direction's
        (``gradients.disruption_mask``); return the fraction of elements whose step survives."""
        kept = torch.zeros((), dtype=torch.float64, device=grads[0].device)
        for g, r in zip(grads, retain_direction):  # one tensor's temporaries at a time
            mask = disruption_mask(g, r)
            g.mul_(mask)
            kept += full_value(mask.sum())  # summed over the shards under FSDP2
        return kept / sum(g.numel() for g in grads)


class WagleMask:
    """WAGLE (Jia et al. 2024): before unlearning, keep the top ``fraction`` of weights by
    ``|(theta - g_retain/gamma) * g_forget|``; the others never change."""

    def __init__(self, fraction: float, gamma: float):
        self.fraction, self.gamma = fraction, gamma
        self.mask: list[torch.Tensor] | None = None

    def initialize(self, base: Sequence[torch.Tensor], retain_grads: Sequence[torch.Tensor], forget_grads: Sequence[torch.Tensor]) -> None:
        scores = [
            ((at_least_float32(p.detach()) - at_least_float32(g_r) / self.gamma) * at_least_float32(g_f)).abs()
            for p, g_r, g_f in zip(base, retain_grads, forget_grads)
        ]
        self.mask = top_fraction_mask(scores, self.fraction)


class Adversary:
    """Target weights that relearn the forget set (fp32): forked from the base every ``fork_every_n_loops``
    loops, stepped along the forget cross-entropy gradient, decayed towards an anchor."""

    def __init__(self, lr: float, decay: float, fork_every_n_loops: int):
        self.lr, self.decay, self.fork_every_n_loops = lr, decay, fork_every_n_loops
        self.weights: list[torch.Tensor] | None = None

    def fork_if_due(self, base: Sequence[torch.Tensor], loop: int) -> None:
        if loop % self.fork_every_n_loops != 0:
            return
        if self.weights is None:
            self.weights = [at_least_float32(p.detach()).clone() for p in base]
        else:  # into the same buffers: a new copy would hold two adversaries in memory while it is made
            for adv, p in zip(self.weights, base):  # one by one: DTensor (FSDP2's shards) has no _foreach_copy_
                adv.copy_(p.detach())

    def step(self, forget_ce_grads: Sequence[torch.Tensor], anchor: Sequence[torch.Tensor] | None) -> None:
        """``adv -= lr * g_a``, then ``adv = d * adv + (1 - d) * anchor`` (nothing to do, and no anchor, when d = 1)."""
        for i, (adv, g) in enumerate(zip(self.weights, forget_ce_grads)):
            adv.sub_(at_least_float32(g), alpha=self.lr)
            if self.decay < 1:
                adv.mul_(self.decay).add_(anchor[i], alpha=1 - self.decay)


class Reference:
    """The original model's outputs, without a second model: the model with the trained tensors at their
    original values (kept here), or, for a PEFT model, with its adapter disabled."""

    def __init__(self, peft: bool):
        self.peft = peft
        self.original: list[torch.Tensor] | None = None

    def initialize(self, base: Sequence[torch.Tensor]) -> None:
        if not self.peft and self.original is None:
            self.original = [p.detach().clone() for p in base]

    @torch.no_grad()
    def outputs(self, model: nn.Module, batch: dict[str, torch.Tensor], target_names: Sequence[str], hidden_states: bool) -> LMOutputs:
        if self.peft:
            with model.disable_adapter():
                return lm_outputs(model, batch, None, hidden_states)
        return lm_outputs(model, batch, dict(zip(target_names, self.original)), hidden_states)


def representation_anchor(outputs: LMOutputs, reference: LMOutputs, mask: torch.Tensor) -> torch.Tensor:
    """TAR's representation matching: the mean over layers of the squared distance of the hidden states to the
    original model's. The last hidden state is left out: its scale is far larger than the others' (MUDMAN, TAR)."""
    distances = [
        representation_distance(h, h_orig, mask, squared=True)
        for h, h_orig in zip(outputs.hidden_states[:-1], reference.hidden_states[:-1])
    ]
    return torch.stack(distances).mean()
