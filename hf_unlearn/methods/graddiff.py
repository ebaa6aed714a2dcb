"""GradDiff: gradient ascent on the forget set, gradient descent on the retain set.

Liu et al. (2022), "Continual Learning and Private Unlearning"; the standard baseline of TOFU,
MUSE and WMDP evaluations. Loss = forget_weight * (-CE(forget)) + retain_weight * CE(retain),
minimised by any optimizer (AdamW by default). With ``unlearning_loss`` other registry losses
replace -CE, and every component of ``UnlearnConfig`` (masking, normalization, adversary) can be
switched on: ``GradDiffConfig(disruption_masking=True)`` is GradDiff with Disruption Masking.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import UnlearnConfig
from .base import UnlearningMethod, register_method


@dataclass
class GradientMethodConfig(UnlearnConfig):
    """Defaults shared by the loss-based baselines: every MUDMAN component off, AdamW on all linear layers.

    ``unlearning_rate`` and ``retaining_rate`` weigh the forget and retain losses; ``learning_rate``
    is the optimizer's.
    """

    meta_learning: bool = field(default=False, metadata={"help": "Take the forget gradient at a relearning adversary."})
    disruption_masking: bool = field(default=False, metadata={"help": "Mask the forget gradient by sign agreement."})
    normalize_unlearning_grad: bool = field(default=False, metadata={"help": "Normalize the forget gradient."})
    retain_momentum: float = field(default=0.0, metadata={"help": "EMA factor of the retain gradient."})
    unlearning_rate: float = field(default=1.0, metadata={"help": "Weight of the forget loss."})
    retaining_rate: float = field(default=1.0, metadata={"help": "Weight of the retain loss."})
    target_modules: list[str] = field(default_factory=lambda: ["all_linear"], metadata={"help": "Trained layers."})
    learning_rate: float = field(default=1e-5, metadata={"help": "The optimizer's learning rate."})
    optim: str = field(default="adamw_torch", metadata={"help": "The optimizer."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping (0 disables it)."})


@dataclass
class GradDiffConfig(GradientMethodConfig):
    method: str = field(default="graddiff", metadata={"help": "Unlearning method (registry name)."})


@register_method
class GradDiff(UnlearningMethod):
    name = "graddiff"
    config_class = GradDiffConfig
