"""Configuration of the unlearning and relearning-attack trainers (``TrainingArguments`` subclasses)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from transformers import TrainingArguments

from .losses import available_losses


def _fail(field_name: str, value: object, fix: str) -> ValueError:
    return ValueError(f"{field_name}={value!r} is invalid: {fix}")


def check_finite_rates(args: TrainingArguments, names: tuple[str, ...]) -> None:
    for name in names:
        if not math.isfinite(getattr(args, name)):
            raise _fail(name, getattr(args, name), "rates must be finite numbers")


def check_max_steps(args: TrainingArguments) -> None:
    # TrainingArguments reads max_steps=0 as "unset" and trains num_train_epochs instead.
    if args.max_steps == 0:
        raise _fail("max_steps", 0, "use a positive number of steps, or -1 to train for num_train_epochs")


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
    max_retain_loss_ratio: float = field(
        default=2.0,
        metadata={
            "help": "Stop with an error, saving nothing more, when the cross-entropy on a fixed retain batch (measured "
            "before every checkpoint and at the end) exceeds this multiple of its value before unlearning: the rates "
            "destroyed the model. 0 disables the check."
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
        if not (self.max_retain_loss_ratio == 0 or self.max_retain_loss_ratio > 1):
            raise _fail("max_retain_loss_ratio", self.max_retain_loss_ratio, "it must be > 1 (e.g. 2: twice the start), or 0 to disable it")
        check_finite_rates(self, ("unlearning_rate", "retaining_rate", "adv_lr", "learning_rate"))
        check_max_steps(self)
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
    ``eval_forget_loss`` (``metric_for_best_model``). One attack is fragile evidence: robustness
    claims rest on an ``AttackSuite`` of many such configurations (``hf_unlearn.attacks``).

    An evaluation is *diverged* when a metric is NaN/inf or the held-out retain loss exceeds
    ``divergence_retain_ratio`` times its pre-attack value (the attack broke the model). The
    attack stops there, the point is marked in the curve, and it never counts as the attacker's
    best: a broken model says nothing about what the weights still know.
    """

    attack_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Layers the attacker fine-tunes (same syntax as target_modules); None: all parameters."},
    )
    interleave_retain: bool = field(
        default=False,
        metadata={
            "help": "Follow every forget step with a step on a retain batch (the MUDMAN paper's WMDP attack, which keeps "
            "the attacked model generally capable); needs retain_dataset."
        },
    )
    use_peft: bool = field(
        default=False, metadata={"help": "Attack with a LoRA adapter (lora_r, lora_alpha, ...) instead of full fine-tuning."}
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank of the attack's adapter."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha of the attack's adapter."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout of the attack's adapter."})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Modules the adapter wraps (PEFT syntax); None: every linear layer but the head."}
    )
    divergence_retain_ratio: float = field(
        default=1.5,
        metadata={
            "help": "An evaluation whose retain loss exceeds this multiple of the pre-attack retain loss is diverged: the "
            "attack broke the model, so the point is marked and never counts as the attacker's best."
        },
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
    save_strategy: str = field(default="no", metadata={"help": "Attacks are short and re-runnable: no checkpoints by default."})

    def __post_init__(self):
        for name in ("attack_modules", "lora_target_modules"):
            if isinstance(getattr(self, name), str):
                setattr(self, name, [getattr(self, name)])
        if self.divergence_retain_ratio <= 1:
            raise _fail("divergence_retain_ratio", self.divergence_retain_ratio, "it must be > 1 (e.g. 1.5: retain loss +50 %)")
        if self.use_peft and self.attack_modules:
            raise _fail("attack_modules", self.attack_modules, "use lora_target_modules with use_peft=True")
        if self.use_peft and self.lora_r < 1:
            raise _fail("lora_r", self.lora_r, "it must be >= 1")
        if self.interleave_retain and self.gradient_accumulation_steps != 1:
            raise _fail("gradient_accumulation_steps", self.gradient_accumulation_steps, "set it to 1 with interleave_retain=True")
        check_finite_rates(self, ("learning_rate",))
        check_max_steps(self)
        super().__post_init__()

    def lora_config(self):
        """The attack's ``peft.LoraConfig`` (``use_peft``), or None for full fine-tuning."""
        if not self.use_peft:
            return None
        from peft import LoraConfig

        return LoraConfig(
            r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            target_modules=self.lora_target_modules or "all-linear",
            task_type="CAUSAL_LM",
        )

    def describe(self) -> str:
        """The attack's settings in a few words, for tables: ``"adamw_torch lr 1e-04, clip 1, 60 steps, LoRA r16"``."""
        optim = str(getattr(self.optim, "value", self.optim))
        parts = [f"{optim} lr {self.learning_rate:.0e}", f"clip {self.max_grad_norm:g}" if self.max_grad_norm > 0 else "no clip"]
        parts.append(f"{self.max_steps} steps" if self.max_steps > 0 else f"{self.num_train_epochs:g} epochs")
        if self.use_peft:
            parts.append(f"LoRA r{self.lora_r}")
        if self.attack_modules:
            parts.append("modules " + "/".join(self.attack_modules))
        if self.interleave_retain:
            parts.append("retain-interleaved")
        return ", ".join(parts)
