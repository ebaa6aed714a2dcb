"""Config fields of the composable components, one small dataclass per component.

A method's config inherits exactly the components its objective and procedure can use (as PEFT
tuners' configs hold only their own fields), so a setting nothing reads does not exist there; the
settings a switch turns off (``adv_lr`` without ``meta_learning``) are refused at config time.
Defaults are the components switched off, and the rates are plain loss weights (1, 1): the
published baselines. ``MUDMANConfig`` switches them on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..losses import available_losses


@dataclass
class ForgetLossArguments:
    unlearning_loss: str = field(
        default="neg_cross_entropy",
        metadata={"help": f"Loss minimised on the forget set, by registry name: {', '.join(available_losses())}."},
    )


@dataclass
class RateArguments:
    unlearning_rate: float = field(
        default=1.0,
        metadata={
            "help": "Step size (MUDMAN) or weight (optimizer-driven methods) of the forget objective. With normalization on, "
            "the update's root-mean-square element equals this value (SmolLM2-135M gate_proj weights have RMS ~0.19)."
        },
    )
    retaining_rate: float = field(
        default=1.0,
        metadata={"help": "Step size (MUDMAN) or weight (optimizer-driven methods) of the retain objective."},
    )


@dataclass
class MaskingArguments:
    disruption_masking: bool = field(
        default=False,
        metadata={"help": "Update a weight only where the unlearning gradient and the retain direction have the same sign."},
    )
    retain_momentum: float = field(
        default=0.0,
        metadata={"help": "EMA factor beta of the retain gradient, whose EMA is the retain direction (0: the current gradient)."},
    )


@dataclass
class AdversaryArguments:
    meta_learning: bool = field(
        default=False,
        metadata={
            "help": "Take the unlearning gradient at an adversary that relearns the forget set (MUDMAN's meta-learning). "
            "Off: take it at the base weights."
        },
    )
    adv_lr: float = field(default=1e-3, metadata={"help": "Learning rate of the adversary's fine-tuning step on the forget batch."})
    adv_decay: float = field(
        default=1.0, metadata={"help": "Adversary decay d: after each step adv = d*adv + (1-d)*base. 1 disables the decay."}
    )
    fork_every_n_loops: int = field(
        default=32, metadata={"help": "Every this many loops the adversary is reset to a copy of the base weights."}
    )


@dataclass
class NormalizationArguments:
    normalize_unlearning_grad: bool = field(
        default=False,
        metadata={
            "help": "Rescale the unlearning gradient (before masking) to global L2 norm sqrt(N), N the number of target weights."
        },
    )


@dataclass
class RepresentationAnchorArguments:
    retain_representation_weight: float = field(
        default=0.0,
        metadata={
            "help": "Add this times the squared L2 distance of every layer's representations (but the last) to the original "
            "model's to the retain loss (TAR's representation matching). 0 disables it."
        },
    )


@dataclass
class WagleArguments:
    wagle_fraction: float = field(
        default=1.0,
        metadata={
            "help": "WAGLE weight attribution (Jia et al. 2024): before unlearning, keep only this fraction of the target "
            "weights, those with the highest |(theta - grad_retain/wagle_gamma) * grad_forget|; the others never change. "
            "1 disables it."
        },
    )
    wagle_gamma: float = field(default=1.0, metadata={"help": "WAGLE's gamma (see wagle_fraction)."})


@dataclass
class TransformArguments(MaskingArguments, AdversaryArguments, NormalizationArguments, WagleArguments):
    """The gradient transforms, which compose with any objective (Circuit Breakers has only these)."""


@dataclass
class ComponentArguments(ForgetLossArguments, RateArguments, RepresentationAnchorArguments, TransformArguments):
    """Every component: the config of methods whose objective uses all of them (MUDMAN, TAR, GradDiff)."""


@dataclass
class OptimizerArguments:
    """``TrainingArguments`` defaults of the optimizer-driven baselines: AdamW on every linear layer."""

    target_modules: list[str] = field(default_factory=lambda: ["all_linear"], metadata={"help": "Trained layers."})
    learning_rate: float = field(default=1e-5, metadata={"help": "The optimizer's learning rate."})
    optim: str = field(default="adamw_torch", metadata={"help": "The optimizer."})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "Scheduler type (any HF schedule)."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping (0 disables it)."})


def check_component_args(args: object) -> None:
    """Range checks of whichever component fields ``args`` has."""
    checks = {
        "unlearning_loss": (lambda v: v in available_losses(), f"choose one of {', '.join(available_losses())}"),
        "unlearning_rate": (lambda v: v >= 0, "rates must be >= 0"),
        "retaining_rate": (lambda v: v >= 0, "rates must be >= 0"),
        "adv_lr": (lambda v: v >= 0, "rates must be >= 0"),
        "retain_momentum": (lambda v: 0 <= v < 1, "it must be in [0, 1)"),
        "adv_decay": (lambda v: 0 <= v <= 1, "it must be in [0, 1] (1 disables the decay)"),
        "fork_every_n_loops": (lambda v: v >= 1, "it must be >= 1"),
        "wagle_fraction": (lambda v: 0 < v <= 1, "it must be in (0, 1] (1 disables WAGLE)"),
        "wagle_gamma": (lambda v: v > 0, "it must be > 0"),
        "retain_representation_weight": (lambda v: v >= 0, "it must be >= 0 (0 disables it)"),
    }
    for name, (valid, fix) in checks.items():
        if hasattr(args, name) and not valid(getattr(args, name)):
            raise ValueError(f"{name}={getattr(args, name)!r} is invalid: {fix}")
