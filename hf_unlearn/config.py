"""Configuration of the unlearning and relearning-attack trainers (``TrainingArguments`` subclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from .losses import available_losses


def _fail(field_name: str, value: object, fix: str) -> ValueError:
    return ValueError(f"{field_name}={value!r} is invalid: {fix}")


@dataclass
class UnlearnConfig(TrainingArguments):
    r"""Configuration of [`UnlearnTrainer`], and of its default method, MUDMAN.

    Besides every ``TrainingArguments`` field, it holds the unlearning components that any method
    can switch on (MUDMAN, Sondej et al. 2025): meta-learning against a forked adversary, Disruption
    Masking against the retain-gradient EMA, normalization of the unlearning gradient, a
    representation-matching retain loss (TAR) and a static WAGLE weight mask. Other methods
    subclass it with their own fields and defaults (``GradDiffConfig``, ``NPOConfig``, ...).

    Defaults that differ from ``TrainingArguments``, because the method writes its full update into
    ``param.grad`` and lets plain SGD apply it: ``learning_rate=1.0`` (a multiplier on the whole
    update; a scheduler scales it by its factor), ``optim="sgd"``, ``lr_scheduler_type="constant"``,
    ``max_grad_norm=0`` (clipping would rescale the normalized update), ``per_device_train_batch_size=16``
    and ``logging_steps=10``.
    """

    method: str = field(
        default="mudman",
        metadata={"help": "Unlearning method, by registry name (see hf_unlearn.available_methods())."},
    )
    unlearning_loss: str = field(
        default="neg_cross_entropy",
        metadata={"help": f"Loss minimised on the forget set, by registry name: {', '.join(available_losses())}."},
    )
    unlearning_rate: float = field(
        default=1e-4,
        metadata={
            "help": "Step size of the unlearning update. With normalization on, the update's root-mean-square "
            "element equals this value (SmolLM2-135M gate_proj weights have RMS ~0.19; the demo uses 3e-4)."
        },
    )
    retaining_rate: float = field(
        default=1e-3,
        metadata={"help": "Step size of the retain update, taken along the retain-gradient EMA every loop."},
    )
    retain_momentum: float = field(
        default=0.9,
        metadata={"help": "EMA factor beta of the retain gradient (0 uses the current retain gradient only)."},
    )
    meta_learning: bool = field(
        default=True,
        metadata={
            "help": "Take the unlearning gradient at an adversary that relearns the forget set (MUDMAN's "
            "meta-learning). Off: take it at the base weights."
        },
    )
    adv_lr: float = field(
        default=1e-3, metadata={"help": "Learning rate of the adversary's fine-tuning step on the forget batch."}
    )
    adv_decay: float = field(
        default=1.0,
        metadata={"help": "Adversary decay d: after each step adv = d*adv + (1-d)*base. 1 disables the decay."},
    )
    fork_every_n_loops: int = field(
        default=32, metadata={"help": "Every this many loops the adversary is reset to a copy of the base weights."}
    )
    disruption_masking: bool = field(
        default=True,
        metadata={
            "help": "Update a weight only where the unlearning gradient and the retain-gradient EMA have the same sign."
        },
    )
    normalize_unlearning_grad: bool = field(
        default=True,
        metadata={
            "help": "Rescale the unlearning gradient (before masking) to global L2 norm sqrt(N), N the number of "
            "target weights."
        },
    )
    retain_representation_weight: float = field(
        default=0.0,
        metadata={
            "help": "Add this times the squared L2 distance of every layer's representations (but the last) to the "
            "original model's to the retain loss (TAR's representation matching). 0 disables it."
        },
    )
    wagle_fraction: float = field(
        default=1.0,
        metadata={
            "help": "WAGLE weight attribution (Jia et al. 2024): before unlearning, keep only this fraction of the target "
            "weights, those with the highest |(theta - grad_retain/wagle_gamma) * grad_forget|; the others never change. "
            "1 disables it."
        },
    )
    wagle_gamma: float = field(default=1.0, metadata={"help": "WAGLE's gamma (see wagle_fraction)."})
    target_modules: list[str] = field(
        default_factory=lambda: ["first_mlp"],
        metadata={
            "help": "Layers whose weights are trained; everything else stays frozen. Names ('gate_proj'), regular "
            "expressions over full names, or aliases: 'first_mlp' (gate_proj in Llama-style models, dense_h_to_4h "
            "in GPT-NeoX, c_fc in GPT-2) and 'all_linear'."
        },
    )
    dataset_text_field: str = field(
        default="text", metadata={"help": "Text column of the forget/retain/eval datasets when not pre-tokenized."}
    )
    max_length: int | None = field(
        default=1024, metadata={"help": "Truncate tokenized text to this many tokens (None: no truncation)."}
    )

    # TrainingArguments fields with other defaults (see the class docstring).
    learning_rate: float = field(
        default=1.0, metadata={"help": "Multiplier on the update the method builds; keep 1.0 and tune its own rates."}
    )
    optim: str = field(default="sgd", metadata={"help": "Optimizer; methods that build their update need 'sgd'."})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "Scheduler type; its factor scales updates."})
    max_grad_norm: float = field(default=0.0, metadata={"help": "Gradient clipping; 0 disables it."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Forget (and retain) examples per step."})
    logging_steps: float = field(default=10, metadata={"help": "Log every X update steps."})

    def __post_init__(self):
        if self.unlearning_loss not in available_losses():
            raise _fail("unlearning_loss", self.unlearning_loss, f"choose one of {', '.join(available_losses())}")
        for name in ("unlearning_rate", "retaining_rate", "adv_lr"):
            if getattr(self, name) < 0:
                raise _fail(name, getattr(self, name), "rates must be >= 0")
        if not 0 <= self.retain_momentum < 1:
            raise _fail("retain_momentum", self.retain_momentum, "it must be in [0, 1)")
        if not 0 <= self.adv_decay <= 1:
            raise _fail("adv_decay", self.adv_decay, "it must be in [0, 1] (1 disables the decay)")
        if self.fork_every_n_loops < 1:
            raise _fail("fork_every_n_loops", self.fork_every_n_loops, "it must be >= 1")
        if not 0 < self.wagle_fraction <= 1:
            raise _fail("wagle_fraction", self.wagle_fraction, "it must be in (0, 1] (1 disables WAGLE)")
        if self.wagle_gamma <= 0:
            raise _fail("wagle_gamma", self.wagle_gamma, "it must be > 0")
        if self.retain_representation_weight < 0:
            raise _fail("retain_representation_weight", self.retain_representation_weight, "it must be >= 0 (0 disables it)")
        if isinstance(self.target_modules, str):
            self.target_modules = [self.target_modules]
        super().__post_init__()
        from .methods import get_method_class  # methods define configs of their own, which import this module

        get_method_class(self.method).check_args(self)


@dataclass
class RelearnAttackConfig(TrainingArguments):
    r"""Configuration of [`RelearnAttackTrainer`]: fine-tuning on forget data to bring knowledge back.

    Defaults follow the MUDMAN paper's attack on SmolLM: plain SGD, ``learning_rate=3e-3``, constant
    schedule, no clipping, batch 16, evaluation every 10 steps and before the first step, so the
    attacker's best point includes the unattacked model. The best point is the lowest
    ``eval_forget_loss`` (``metric_for_best_model``).
    """

    attack_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Layers the attacker fine-tunes (same syntax as target_modules); None: all parameters."},
    )
    dataset_text_field: str = field(default="text", metadata={"help": "Text column when not pre-tokenized."})
    max_length: int | None = field(default=1024, metadata={"help": "Truncate tokenized text to this many tokens."})

    learning_rate: float = field(default=3e-3, metadata={"help": "Attack learning rate."})
    optim: str = field(default="sgd", metadata={"help": "Attack optimizer (any HF optimizer)."})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "Scheduler type."})
    max_grad_norm: float = field(default=0.0, metadata={"help": "Gradient clipping; 0 disables it."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Attack examples per step."})
    eval_strategy: str = field(default="steps", metadata={"help": "When to measure the recovery curve."})
    eval_steps: float | None = field(default=10, metadata={"help": "Evaluate every X attack steps."})
    eval_on_start: bool = field(default=True, metadata={"help": "Evaluate before the first attack step."})
    metric_for_best_model: str | None = field(
        default="eval_forget_loss",
        metadata={
            "help": "What the attacker optimises, for best_point(): an eval metric such as eval_forget_loss (lower is "
            "better) or eval_facts_accuracy (set greater_is_better=True; inferred from the name when unset)."
        },
    )
    logging_steps: float = field(default=10, metadata={"help": "Log every X update steps."})

    def __post_init__(self):
        if isinstance(self.attack_modules, str):
            self.attack_modules = [self.attack_modules]
        super().__post_init__()
