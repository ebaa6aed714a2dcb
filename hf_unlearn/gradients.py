"""Pure tensor functions that turn raw gradients into an unlearning update.

Everything here acts on lists of tensors (one per target weight) and has no knowledge of models,
trainers or processes: the caller reduces gradients across processes first, so every rank computes
the same norms and masks from the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def global_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """L2 norm of all tensors taken together, computed in fp32 (bf16 sums of squares lose precision)."""
    if not tensors:
        raise ValueError("global_norm needs at least one tensor")
    squares = torch.stack([t.detach().float().pow(2).sum() for t in tensors])
    return squares.sum().sqrt()


def normalize(grads: Sequence[torch.Tensor], norm: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Scale ``grads`` jointly so that their global L2 norm is ``sqrt(N)``, N the number of elements.

    The ``sqrt(N)`` target makes the root-mean-square element equal to 1 whatever the target modules,
    so one unlearning rate transfers between experiments with different target modules (MUDMAN).
    An all-zero gradient stays zero instead of turning into NaN. ``norm``: ``global_norm(grads)`` if
    the caller has it already.
    """
    norm = global_norm(grads) if norm is None else norm
    numel = sum(g.numel() for g in grads)
    if norm == 0:
        return [torch.zeros_like(g) for g in grads]
    scale = numel**0.5 / norm
    return [(g.float() * scale).to(g.dtype) for g in grads]


def disruption_mask(unlearning_grad: torch.Tensor, retain_grad: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the elements where both gradients have the same sign (Disruption Masking).

    Descending ``unlearning_grad`` on such an element also descends the retain loss, so the update
    cannot disrupt retained behaviour to first order. Elements where exactly one of the two is zero
    are dropped; where both are zero the masked update is zero anyway.
    """
    if unlearning_grad.shape != retain_grad.shape:
        raise ValueError(f"shape mismatch: {tuple(unlearning_grad.shape)} vs {tuple(retain_grad.shape)}")
    return torch.sign(unlearning_grad) == torch.sign(retain_grad)


def ema_(accumulator: torch.Tensor, value: torch.Tensor, momentum: float) -> torch.Tensor:
    """In place ``accumulator = momentum * accumulator + (1 - momentum) * value``; returns it."""
    return accumulator.mul_(momentum).add_(value, alpha=1.0 - momentum)
