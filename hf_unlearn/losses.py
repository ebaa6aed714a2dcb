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
from trl.trainer.utils import selective_log_softmax

from .gradients import at_least_float32

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
    return at_least_float32(logits[:, :-1, :][valid]), targets[valid]


def _mean_or_zero(values: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    # A batch with no target token contributes nothing, but must stay in the autograd graph.
    return values.mean() if values.numel() else logits.sum() * 0.0


@register_loss("cross_entropy")
def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (nats per token).

    Taken over the logits as they are, with the targets shifted instead (as ``transformers``' own
    loss): selecting the target rows of the logits first would make one more vocabulary-wide copy of
    them, and of their gradient in the backward pass (~150 MB at 8 x 100 tokens on SmolLM2).
    """
    targets = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX).flatten()
    values = F.cross_entropy(at_least_float32(logits).flatten(0, 1), targets, reduction="none")  # 0 at ignored positions
    return _mean_or_zero(values[targets != IGNORE_INDEX], logits)


def token_loss_sums(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence: the sum of its next-token cross-entropies and its number of target tokens.

    Summed over a split and divided, they give the split's token-mean loss, whatever batches or
    processes it was cut into (a mean of batch means weighs a token by its batch's size).
    """
    targets = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    values = F.cross_entropy(at_least_float32(logits).transpose(1, 2), targets, reduction="none")  # 0 at ignored positions
    return values.double().sum(dim=1), (targets != IGNORE_INDEX).sum(dim=1)


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


# --- Sequence and representation losses of the baselines (pure functions, composed by methods) ---


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence: the summed log-probability of its target tokens, and how many there are.

    Returns two tensors of shape (batch,): log pi(y|x) and |y|.
    """
    targets = labels[:, 1:]
    valid = targets != IGNORE_INDEX
    token_logprobs = selective_log_softmax(at_least_float32(logits[:, :-1]), targets.clamp(min=0))  # TRL's memory-efficient gather
    return (token_logprobs * valid).sum(dim=1), valid.sum(dim=1)


def npo_loss(logprobs: torch.Tensor, reference_logprobs: torch.Tensor, beta: float) -> torch.Tensor:
    """Negative Preference Optimization (Zhang et al. 2024): mean of -(2/beta) log sigmoid(-beta log(pi/pi_ref)).

    Bounded below by 0 and flat once pi << pi_ref, unlike gradient ascent, which diverges.
    """
    return (-2.0 / beta) * F.logsigmoid(-beta * (logprobs - reference_logprobs)).mean()


def simnpo_loss(logprobs: torch.Tensor, lengths: torch.Tensor, beta: float, gamma: float = 0.0) -> torch.Tensor:
    """SimNPO (Fan et al. 2024): NPO without a reference model, on the length-normalised log-likelihood,
    mean of -(2/beta) log sigmoid(-(beta/|y|) log pi(y|x) - gamma)."""
    return (-2.0 / beta) * F.logsigmoid(-(beta / lengths.clamp(min=1)) * logprobs - gamma).mean()


def _token_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (batch, seq, ...) over the positions where ``mask`` (batch, seq) is set."""
    mask = mask.to(values.dtype)
    while mask.dim() < values.dim():
        mask = mask[..., None]
    count = mask.expand_as(values).sum()
    return (values * mask).sum() / count.clamp(min=1)


def steering_loss(hidden: torch.Tensor, control: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RMU's forget term: mean squared error between activations (batch, seq, width) and ``control`` (width,)."""
    return _token_mean((at_least_float32(hidden) - control) ** 2, mask)


def activation_mse(hidden: torch.Tensor, original: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RMU's retain term: mean squared error to the frozen model's activations."""
    return _token_mean((at_least_float32(hidden) - at_least_float32(original)) ** 2, mask)


def representation_distance(hidden: torch.Tensor, original: torch.Tensor, mask: torch.Tensor, squared: bool = False) -> torch.Tensor:
    """Mean over tokens of the L2 distance ``||h - h_original||`` (or its square) over the width.

    Circuit Breakers' retain loss (plain) and TAR's representation-matching retain loss (squared).
    """
    distance = torch.linalg.vector_norm(at_least_float32(hidden) - at_least_float32(original), dim=-1)
    return _token_mean(distance**2 if squared else distance, mask)


def rerouting_loss(hidden: torch.Tensor, original: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Circuit Breakers' forget term: mean over tokens of relu(cos(h, h_original)); 0 once orthogonal or opposite."""
    cosine = F.cosine_similarity(at_least_float32(hidden), at_least_float32(original), dim=-1)
    return _token_mean(F.relu(cosine), mask)


def relative_representation_distance(
    hidden: torch.Tensor, original: torch.Tensor, mask: torch.Tensor, mean_original_norm: torch.Tensor | None = None
) -> torch.Tensor:
    """CIR's retain loss (its authors' ``cb_retain``): mean over tokens of ``||h - h_original||`` divided by
    the mean over tokens of ``||h_original||``, so that high-norm tokens weigh more than in a mean of ratios.

    ``mean_original_norm``: the denominator when computed elsewhere (over every process's tokens).
    """
    distance = _token_mean(torch.linalg.vector_norm(at_least_float32(hidden) - at_least_float32(original), dim=-1), mask)
    if mean_original_norm is None:
        mean_original_norm = _token_mean(torch.linalg.vector_norm(at_least_float32(original), dim=-1), mask)
    return distance / mean_original_norm.clamp(min=1e-6)


def mlp_breaking_loss(
    outputs: list[torch.Tensor],
    originals: list[torch.Tensor],
    mean_norms: list[torch.Tensor] | None = None,
    floor: float = 0.0,
) -> torch.Tensor:
    """CIR's "MLP breaking": mean over layers and tokens of max(<o_t, o_t^orig> / mean ||o^orig||^2, floor).

    ``outputs`` and ``originals``: per layer, the MLP outputs (tokens, width) of the current and the
    original model on the same tokens. Minimising it turns each MLP's output away from (and
    eventually orthogonal to) what it originally wrote; the normalisation by the original mean
    squared norm makes every layer count the same. ``mean_norms``: the per-layer mean of
    ``||o^orig||`` if computed elsewhere (over every process's tokens), else taken from ``originals``.
    """
    terms = []
    for i, (out, original) in enumerate(zip(outputs, originals)):
        mean_norm = at_least_float32(original).norm(dim=-1).mean() if mean_norms is None else mean_norms[i]
        scale = mean_norm.clamp(min=1e-6) ** 2
        terms.append(((at_least_float32(out) * at_least_float32(original)).sum(dim=-1) / scale).clamp(min=floor).mean())
    return torch.stack(terms).mean()
