"""``RelearnAttackConfig``: how one attack brings knowledge back (``TrainingArguments`` subclass)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from transformers import TrainingArguments

from ..unlearn_config import check_finite_rates, check_max_steps, invalid_setting, no_pinned_memory_without_accelerator
from .attack import ATTACK_KINDS, FINE_TUNE
from .inputs import PROMPT_TEMPLATES


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

    kind: str = field(
        default=FINE_TUNE,
        metadata={
            "help": "fine_tune (the attacks below), or one that trains nothing and costs evaluations only: quantize (the "
            "model at quantize_bits), in_context (in_context_shots examples of the attack data before each evaluated "
            "text), prompt (each of prompt_templates before it). See hf_unlearn.attacks."
        },
    )
    quantize_bits: int = field(default=4, metadata={"help": "quantize: 8 (per-row int8) or 4 (int4, groups of quantize_group_size)."})
    quantize_group_size: int | None = field(default=None, metadata={"help": "quantize: inputs per scale; None: torchao's (8 bits: a row, 4: 32)."})
    in_context_shots: list[int] = field(
        default_factory=lambda: [1, 2, 4, 8, 16],
        metadata={"help": "in_context: numbers of attack examples put before each evaluated text; the attacker's best over them "
                  "(those the model's context holds)."},  # fmt: skip
    )
    prompt_templates: list[str] | None = field(
        default=None, metadata={"help": "prompt: the templates tried (hf_unlearn.attacks.inputs.PROMPT_TEMPLATES); None: all."}
    )
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
    text_samples: int = field(
        default=3,
        metadata={"help": "Greedy completions of this many held-out forget prompts, at the start and at each new best point "
                  "of an attack: the report shows the text of the untouched, unlearned and attacked models. 0: none."},  # fmt: skip
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
            raise invalid_setting("divergence_retain_ratio", self.divergence_retain_ratio, "it must be > 1 (e.g. 1.5: retain loss +50 %)")
        if self.text_samples < 0:
            raise invalid_setting("text_samples", self.text_samples, "it must be >= 0 (0: no text samples)")
        if self.use_peft and self.attack_modules:
            raise invalid_setting("attack_modules", self.attack_modules, "use lora_target_modules with use_peft=True")
        if self.use_peft and self.lora_r < 1:
            raise invalid_setting("lora_r", self.lora_r, "it must be >= 1")
        if self.interleave_retain and self.gradient_accumulation_steps != 1:
            raise invalid_setting("gradient_accumulation_steps", self.gradient_accumulation_steps, "set it to 1 with interleave_retain=True")
        if self.kind not in ATTACK_KINDS:
            raise invalid_setting("kind", self.kind, f"choose one of {', '.join(ATTACK_KINDS)}")
        for other in ATTACK_KINDS.values():  # another kind's settings would be ignored: the attack is not what they say
            given = [name for name in other.settings if other.name != self.kind and getattr(self, name) != FIELD_DEFAULTS[name]]
            if given:
                raise invalid_setting("kind", self.kind, f"{' and '.join(given)} are {other.name} settings: set kind={other.name!r}")
        if self.quantize_bits not in (4, 8):
            raise invalid_setting("quantize_bits", self.quantize_bits, "choose 8 or 4")
        if self.quantize_group_size is not None and self.quantize_group_size < 1:  # 0 read as unset: one scale per row
            raise invalid_setting(
                "quantize_group_size", self.quantize_group_size, "give inputs per scale >= 1 that divide the layers' input width, or leave it unset"
            )
        if isinstance(self.in_context_shots, int):
            self.in_context_shots = [self.in_context_shots]
        if any(shots < 1 for shots in self.in_context_shots):
            raise invalid_setting("in_context_shots", self.in_context_shots, "give numbers of examples >= 1 (0 is the unattacked model, always measured)")
        if isinstance(self.prompt_templates, str):
            self.prompt_templates = [self.prompt_templates]
        unknown = [name for name in self.prompt_templates or [] if name not in PROMPT_TEMPLATES]
        if unknown:
            raise invalid_setting("prompt_templates", unknown, f"choose among {', '.join(PROMPT_TEMPLATES)}, or leave it unset for all")
        check_finite_rates(self, ("learning_rate",))
        check_max_steps(self)
        no_pinned_memory_without_accelerator(self)
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
        """The attack's settings in a few words, for tables (its kind's ``describe``): ``"adamw_torch lr 1e-04, clip 1,
        60 steps, LoRA r16"``, ``"int4 weights, groups of 32, no training"``."""
        return ATTACK_KINDS[self.kind].describe(self)


FIELD_DEFAULTS = {
    f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default for f in dataclasses.fields(RelearnAttackConfig)
}
