"""Configuration of ``UnlearnTrainer`` (a ``TrainingArguments`` subclass), and the checks every trainer's config shares."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments

from .evaluation.disruption import UNITS, DisruptionBudget


def invalid_setting(field_name: str, value: object, fix: str) -> ValueError:
    return ValueError(f"{field_name}={value!r} is invalid: {fix}")


def check_finite_rates(args: TrainingArguments, names: tuple[str, ...]) -> None:
    """Rates are finite and not negative (a negative one reverses what the method does); named, before torch's
    "Invalid learning rate" or a training that climbs the wrong way."""
    for name in names:
        if hasattr(args, name) and not (math.isfinite(getattr(args, name)) and getattr(args, name) >= 0):
            raise invalid_setting(name, getattr(args, name), "rates must be finite numbers >= 0")


def check_max_steps(args: TrainingArguments) -> None:
    # TrainingArguments reads max_steps=0 as "unset" and trains num_train_epochs instead.
    if args.max_steps == 0:
        raise invalid_setting("max_steps", 0, "use a positive number of steps, or -1 to train for num_train_epochs")


@dataclass
class UnlearnConfig(TrainingArguments):
    r"""What every unlearning method's config holds: [`UnlearnTrainer`]'s own fields, and ``TrainingArguments``.

    Each method has its config, a subclass holding the fields its objective and update procedure
    read (``MUDMANConfig``, ``GradDiffConfig``, ``CIRConfig``, ...; the components' fields come from
    ``hf_unlearn.components.arguments``); ``method`` names it in the registry. ``UnlearnTrainer`` asks the
    method to check its config (``MethodSpec.check_args``: settings it cannot honour or would not read), so
    this base, whose ``method`` is None, is valid to build and to subclass, and no trainer runs it.
    """

    method: str | None = field(
        default=None,
        metadata={"help": "Unlearning method, by registry name (see hf_unlearn.available_methods()); each method's config sets it."},
    )
    target_modules: list[str] = field(
        default_factory=lambda: ["first_mlp"],
        metadata={
            "help": "Layers whose weights are trained; everything else stays frozen. Names ('gate_proj'), regular "
            "expressions over full names, or aliases: 'first_mlp' (gate_proj in Llama-style models, dense_h_to_4h "
            "in GPT-NeoX, c_fc in GPT-2), 'last_mlp' and 'all_linear'."
        },
    )
    max_passes: int | None = field(
        default=None,
        metadata={
            "help": "Stop once the method has used this many forward+backward passes (forward_backward_passes): methods "
            "compared at equal compute. The final model is evaluated."
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
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Forget examples per step (and retain examples, by default)."})
    retain_batch_size: int | None = field(
        default=None, metadata={"help": "Retain examples per step and process; None: per_device_train_batch_size."}
    )
    logging_steps: float = field(default=10, metadata={"help": "Log every X update steps."})
    include_num_input_tokens_seen: str = field(
        default="non_padding",
        metadata={"help": "Count the forget tokens trained on (all, non_padding or no): the model card states them."},
    )
    # One disruption budget, one unit, for every method (hf_unlearn.evaluation.disruption): the sweep prunes by the same
    # DisruptionBudget, and the card states it.
    disruption_budget: float | None = field(
        default=None,
        metadata={
            "help": "Largest rise of eval_retain_loss (the eval_dataset's 'retain' text) allowed, in disruption_unit: at the first "
            "evaluation beyond it training stops and the weights go back to the last evaluation within it "
            "(DisruptionBudgetCallback). None: no budget (CIR's default: 0.001, +0.1 %)."
        },
    )
    disruption_unit: str = field(
        default="relative", metadata={"help": "Unit of disruption_budget: relative (0.001 = +0.1 %, CIR's) or nats (0.05, MUDMAN's)."}
    )

    def __post_init__(self):
        if self.retain_batch_size is not None and self.retain_batch_size < 1:
            raise invalid_setting("retain_batch_size", self.retain_batch_size, "it must be >= 1, or None for per_device_train_batch_size")
        if not (self.max_retain_loss_ratio == 0 or self.max_retain_loss_ratio > 1):
            raise invalid_setting("max_retain_loss_ratio", self.max_retain_loss_ratio, "it must be > 1 (e.g. 2: twice the start), or 0 to disable it")
        check_finite_rates(self, ("unlearning_rate", "retaining_rate", "adv_lr", "learning_rate"))
        if self.learning_rate == 0 and not isinstance(self, FullUpdateArguments):
            raise invalid_setting("learning_rate", 0, f"the optimizer applies {self.method or 'the method'}'s update, so at 0 nothing trains: use a rate > 0")
        check_max_steps(self)
        if self.max_passes is not None and self.max_passes < 1:
            raise invalid_setting("max_passes", self.max_passes, "it must be >= 1, or None for no pass budget")
        if isinstance(self.target_modules, str):
            self.target_modules = [self.target_modules]
        if self.disruption_unit not in UNITS:
            raise invalid_setting("disruption_unit", self.disruption_unit, f"use one of {', '.join(UNITS)}")
        if self.disruption_budget is not None:
            DisruptionBudget(self.disruption_budget, self.disruption_unit)  # refuses an amount it cannot use, naming the field
        no_pinned_memory_without_accelerator(self)
        super().__post_init__()
        if self.disruption_budget is not None and self.eval_strategy == "no":
            raise invalid_setting("eval_strategy", "no", "a disruption_budget is checked at evaluations: evaluate (steps or epoch), or set disruption_budget=None")


@dataclass
class FullUpdateArguments:
    """``TrainingArguments`` defaults of methods that write their whole update into ``param.grad``
    and let plain SGD apply it (``components.procedures.MetaUnlearningLoop``, CIR)."""

    learning_rate: float = field(
        default=1.0, metadata={"help": "Must stay 1.0: SGD applies the update the method builds as it is; its own rates set the size."}
    )
    optim: str = field(default="sgd", metadata={"help": "Optimizer; methods that build their update need 'sgd'."})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "Scheduler type; these methods need 'constant'."})
    max_grad_norm: float = field(default=0.0, metadata={"help": "Gradient clipping; 0 disables it (it would rescale the update)."})


def no_pinned_memory_without_accelerator(args: TrainingArguments) -> None:
    """Pinned memory needs an accelerator; without one torch warns for every DataLoader (32 times a run)."""
    if not (torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())):
        args.dataloader_pin_memory = False
