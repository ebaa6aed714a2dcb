"""Token-level losses on causal-LM logits, and the registry of unlearning losses by name.

Every loss takes ``logits`` of shape (batch, seq, vocab) and ``labels`` of shape (batch, seq), where
``labels`` holds the input ids with ``-100`` at padding (what our collator produces). Position t's
logits predict token t+1, so losses shift internally; padded targets never count. Means are taken
over the real target tokens of the batch, in fp32.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_LOSSES: dict[str, LossFn] = {}


def register_loss(name: str) -> Callable[[LossFn], LossFn]:
    """Register ``fn(logits, labels) -> scalar`` under ``name`` so configs can select it."""

    def decorator(fn: LossFn) -> LossFn:
        if name in _LOSSES:
            raise ValueError(f"a loss named {name!r} is already registered")
        _LOSSES[name] = fn
        return fn

    return decorator


def available_losses() -> list[str]:
    return sorted(_LOSSES)


def get_loss(name: str) -> LossFn:
    try:
        return _LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; available losses: {', '.join(available_losses())}") from None


def _shifted(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and targets aligned for next-token prediction, kept at the real target tokens only.

    Returns (logits[n, vocab] in fp32, targets[n]) with n the number of real target tokens.
    """
    targets = labels[:, 1:]
    valid = targets != IGNORE_INDEX
    return logits[:, :-1, :][valid].float(), targets[valid]


def _mean_or_zero(values: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    # A batch with no target token contributes nothing, but must stay in the autograd graph.
    return values.mean() if values.numel() else logits.sum() * 0.0


@register_loss("cross_entropy")
def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (nats per token)."""
    flat_logits, targets = _shifted(logits, labels)
    return _mean_or_zero(F.cross_entropy(flat_logits, targets, reduction="none"), logits)


@register_loss("neg_cross_entropy")
def neg_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Gradient ascent on the forget text: minimising it pushes the correct tokens' probability down."""
    return -cross_entropy(logits, labels)


@register_loss("neg_entropy")
def neg_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Minus the mean entropy of the predicted distributions: minimising it makes predictions uniform.

    Used by TAR and by MUDMAN on WMDP; the labels only select which positions count.
    """
    flat_logits, _ = _shifted(logits, labels)
    log_probs = F.log_softmax(flat_logits, dim=-1)
    entropy = -(log_probs.exp() * log_probs).sum(dim=-1)
    return -_mean_or_zero(entropy, logits)


@register_loss("correct_logit_minus_avg")
def correct_logit_minus_avg(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean of ``max(correct logit - mean logit, 0)``.

    Unlike ``neg_cross_entropy`` it stops pushing a token once its logit is below average, so the
    loss is bounded and does not reward driving single tokens to minus infinity.
    """
    flat_logits, targets = _shifted(logits, labels)
    correct = flat_logits.gather(1, targets[:, None]).squeeze(1)
    return _mean_or_zero((correct - flat_logits.mean(dim=-1)).clamp(min=0.0), logits)
