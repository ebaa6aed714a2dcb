"""UNDO (Unlearn, Noise, Distill on Outputs): a stage after any unlearning method.

Lee et al., "Distillation Robustifies Unlearning" (arXiv 2506.06278; code: AddieFoote/distillation-robustify-unlearning,
MIT). Unlearning suppresses knowledge that a few fine-tuning steps bring back; a student that never held the
knowledge, taught only the unlearned model's outputs, does not relearn it as fast. UNDO approximates a fresh student
cheaply: it damages a copy of the unlearned model (shrinks and perturbs its weights, ``noise_weights_``), then
distills the unlearned model (the teacher) into it on ordinary text (``distillation_loss``) until the student's
retain loss is back within ``distill_tolerance`` of the teacher's. See docs/design.md §9.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from datasets import Dataset
from torch import nn
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from .causal_lm_trainer import CausalLMTrainer
from .distributed import shard_frozen
from .evaluation.disruption import METRIC
from .evaluation.evaluators import Evaluator
from .forward import lm_outputs
from .gradients import at_least_float32
from .losses import IGNORE_INDEX
from .model_card import unlearned_from
from .unlearn_config import check_finite_rates, check_max_steps, invalid_setting, no_pinned_memory_without_accelerator

DISTILLATION_INFO_NAME = "distillation_info.json"

# Tokens each base model was pretrained on, from its model card or paper: distillation cost as a share of
# pretraining (the paper's measure of "a fraction of the compute" of filtering the data and pretraining again).
PRETRAINING_TOKENS = {
    "SmolLM2-135M": 2e12,  # SmolLM2 model cards (Allal et al. 2025)
    "SmolLM2-360M": 4e12,
    "SmolLM2-1.7B": 11e12,
    "gemma-2-2b": 2e12,  # Gemma 2 report; the authors' WMDP model
}


def noise_weights_(model: nn.Module, alpha: float, beta: float, seed: int) -> nn.Module:
    """Shrink and perturb ``model``'s trained weights in place, once: θ ← (1−α)·θ + α·β·N; returns it.

    N is drawn like ``torch.nn.init.xavier_uniform_``, uniform in ±sqrt(6 / (fan_in + fan_out)), for every 2-D
    parameter (linear weights and embeddings); 1-D parameters (norms, biases) get no noise, θ ← (1−α)·θ. As the
    authors' ``do_corruption``: only parameters that require grad, each tensor once (a tied embedding and
    output head are one parameter), and other shapes are refused. Unlike theirs, N comes from a generator seeded
    with ``seed`` on the CPU in float32, so the same seed gives the same student on any device and whatever ran
    before; the arithmetic is done in float32 or wider.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():  # deduplicated: tied weights come once
            if not param.requires_grad:
                continue
            weights = at_least_float32(param)
            if param.dim() == 2:
                fan_out, fan_in = param.shape
                bound = math.sqrt(6.0 / (fan_in + fan_out))
                noise = torch.empty(param.shape, dtype=torch.float32).uniform_(-bound, bound, generator=generator)
                noised = (1 - alpha) * weights + alpha * beta * noise.to(weights)
            elif param.dim() == 1:
                noised = (1 - alpha) * weights
            else:
                raise ValueError(f"{name} has {param.dim()} dimensions: noise_weights_ knows 2-D weights and 1-D norms and biases only")
            param.copy_(noised)
    return model


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor, num_tokens: torch.Tensor | float | None = None
) -> torch.Tensor:
    """Forward KL(teacher ‖ student) over the vocabulary at temperature 1, the mean over the tokens where ``mask``
    is true (``num_tokens``: the sum divided by it instead), in float32 or wider; 0 when no token counts.

    ``*_logits`` (batch, seq, vocab) and ``mask`` (batch, seq) are aligned: the caller shifts them (position t's
    logits against token t+1). The authors' ``forward_kl_loss_fn`` computes the same sum over the vocabulary and
    mean over tokens. So does TRL's ``GKDTrainer.generalized_jsd_loss(beta=0)`` (tests/test_undo.py checks they
    agree), but it lives in ``trl.experimental`` (unstable, warns on import), and TRL's stable
    ``DistillationTrainer`` computes its divergence from hidden states of completions it generates on-policy from
    prompts; UNDO distills on fixed text, so neither trainer fits and this is the loss alone.
    """
    student = F.log_softmax(at_least_float32(student_logits[mask]), dim=-1)
    teacher = F.log_softmax(at_least_float32(teacher_logits[mask]), dim=-1)
    per_token = F.kl_div(student, teacher, reduction="none", log_target=True).sum(dim=-1)
    return per_token.sum() / (max(per_token.numel(), 1) if num_tokens is None else num_tokens)


def within_tolerance(student_loss: float, teacher_loss: float, tolerance: float) -> bool:
    """The student's loss exceeds the teacher's by at most ``tolerance`` of it (the authors' stopping rule)."""
    return (student_loss - teacher_loss) / max(teacher_loss, 1e-6) <= tolerance


def pretraining_tokens(model_name: str) -> float | None:
    """Tokens the named base model was pretrained on (``PRETRAINING_TOKENS``), None if not listed."""
    last = Path(model_name).name.lower()
    matches = [tokens for name, tokens in PRETRAINING_TOKENS.items() if name.lower() in last]
    return matches[0] if len(matches) == 1 else None


@dataclass
class UndoConfig(TrainingArguments):
    r"""Configuration of [`UndoTrainer`]: noise the unlearned model once, then distill the unlearned model into it.

    Defaults follow the authors' partial distillation (``run_partial_distill_*.py``): the noise of their
    WMDP run (α = 0.25) with their default β = 0.1; AdamW without weight decay, 50 warm-up steps then cosine decay to
    a tenth of the rate (``cosine_with_min_lr``), gradients clipped to norm 1; the student evaluated every 50 steps
    and stopped once its ``eval_retain_loss`` is within 5 % of the teacher's. Their learning rate depends on the
    model: 7e-4 (arithmetic, 0.3B) and 9e-4 (language, 0.1B) for small models, the default here, 2e-5 for gemma-2-2b.
    """

    noise_alpha: float = field(
        default=0.25,
        metadata={"help": "α: how far the student's weights move from the teacher's towards noise, in [0, 1]: θ ← (1−α)θ + αβN. "
                  "The authors sweep 0.1-0.8; more noise, more robust, more distillation needed."},  # fmt: skip
    )
    noise_beta: float = field(
        default=0.1, metadata={"help": "β: the scale of the Xavier-uniform noise N, in [0, 1] (0: shrink only)."}
    )
    noise_seed: int = field(default=42, metadata={"help": "Seed of the noise: the same seed, the same noised student."})
    distill_tolerance: float | None = field(
        default=0.05,
        metadata={"help": "Stop at the first evaluation where the student's eval_retain_loss is within this fraction of the "
                  "teacher's (0.05: 5 %); needs eval_dataset={'retain': ...}. None: train max_steps (or the token budget)."},  # fmt: skip
    )
    max_distill_tokens: int | None = field(
        default=None, metadata={"help": "Stop once this many (non-padding) tokens were distilled; None: no token budget."}
    )
    dataset_text_field: str = field(default="text", metadata={"help": "Text column of the datasets when not pre-tokenized."})
    max_length: int | None = field(default=1024, metadata={"help": "Truncate tokenized text to this many tokens (None: no truncation)."})

    learning_rate: float = field(default=7e-4, metadata={"help": "Peak AdamW learning rate, after warm-up."})
    optim: str = field(default="adamw_torch", metadata={"help": "Optimizer (the authors': AdamW)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (the authors': 0)."})
    lr_scheduler_type: str = field(default="cosine_with_min_lr", metadata={"help": "Warm-up, then cosine decay to min_lr_rate."})
    lr_scheduler_kwargs: dict | str = field(
        default_factory=lambda: {"min_lr_rate": 0.1}, metadata={"help": "The cosine decays to this fraction of learning_rate."}
    )
    warmup_steps: float = field(default=50, metadata={"help": "Linear warm-up steps (a float below 1: a fraction of the steps)."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    eval_strategy: str = field(default="steps", metadata={"help": "When to compare the student with the teacher."})
    eval_steps: float | None = field(default=50, metadata={"help": "Evaluate every X steps."})
    logging_steps: float = field(default=10, metadata={"help": "Log every X update steps."})
    include_num_input_tokens_seen: str = field(
        default="non_padding", metadata={"help": "Count the distilled tokens (for max_distill_tokens and distillation_info.json)."}
    )

    def __post_init__(self):
        for name in ("noise_alpha", "noise_beta"):
            if not 0 <= getattr(self, name) <= 1:
                raise invalid_setting(name, getattr(self, name), "it must be in [0, 1]: θ ← (1−α)θ + αβN")
        if self.distill_tolerance is not None and not (math.isfinite(self.distill_tolerance) and self.distill_tolerance >= 0):
            raise invalid_setting("distill_tolerance", self.distill_tolerance, "use a fraction >= 0 (0.05: within 5 % of the teacher), or None")
        if self.max_distill_tokens is not None and self.max_distill_tokens < 1:
            raise invalid_setting("max_distill_tokens", self.max_distill_tokens, "use a number of tokens >= 1, or None for no token budget")
        check_finite_rates(self, ("learning_rate",))
        if self.learning_rate == 0:
            raise invalid_setting("learning_rate", 0, "at 0 the student never moves towards the teacher: use a rate > 0")
        check_max_steps(self)
        no_pinned_memory_without_accelerator(self)
        super().__post_init__()
        if self.distill_tolerance is not None and self.eval_strategy == "no":
            raise invalid_setting("eval_strategy", "no", "distill_tolerance is checked at evaluations: evaluate (steps or epoch), or set distill_tolerance=None")
        if self.include_num_input_tokens_seen == "no" and self.max_distill_tokens is not None:
            raise invalid_setting("include_num_input_tokens_seen", "no", "max_distill_tokens needs the tokens counted: use 'non_padding'")


class DistillationStopCallback(TrainerCallback):
    """Stops distillation when the student is back within ``tolerance`` of the teacher on the retain text
    (``eval_retain_loss`` at an evaluation; ``teacher_retain_loss`` is set by ``UndoTrainer.train``), or at the
    first step that brings the distilled tokens to ``max_tokens``."""

    def __init__(self, tolerance: float | None, max_tokens: int | None):
        self.tolerance, self.max_tokens = tolerance, max_tokens
        self.teacher_retain_loss: float | None = None
        self.reached_at: int | None = None  # the step at which the student came within tolerance

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, metrics=None, **kwargs):
        if self.tolerance is None or self.teacher_retain_loss is None or f"eval_{METRIC}" not in (metrics or {}):
            return  # one of several eval datasets: the retain loss comes with another
        if within_tolerance(metrics[f"eval_{METRIC}"], self.teacher_retain_loss, self.tolerance):
            self.reached_at = state.global_step
            control.should_training_stop = True

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self.max_tokens is not None and state.num_input_tokens_seen >= self.max_tokens:
            control.should_training_stop = True


class UndoTrainer(CausalLMTrainer):
    """Distills an unlearned model into a noised copy of itself (UNDO).

    ``model`` is the unlearned model (or its path). A frozen deep copy of it is the teacher (``trainer.teacher``);
    ``model`` itself becomes the student, ``trainer.model``: every parameter trained, noised in place in
    ``__init__`` (``noise_weights_``), as a ``Trainer`` trains the model it is given in place. ``train_dataset`` is
    the distillation text: the authors mix retain-domain text with forget-domain text (50/50 and 75/25; general
    corpora for WMDP), so that the student also copies the teacher's unlearned outputs on the forget domain
    (``datasets.interleave_datasets``). ``eval_dataset`` ``{"retain": ..., "forget": ...}``: the teacher's
    ``eval_retain_loss`` is measured when ``train()`` starts, the student's at every evaluation, and
    ``distill_tolerance`` stops the run (``DistillationStopCallback``).

    Resuming: build the trainer with the same unlearned model and call ``train(resume_from_checkpoint=True)``; the
    checkpoint replaces the student's weights (and optimizer, scheduler, data position), the teacher stays the model
    given. ``save_model`` writes ``distillation_info.json`` beside the weights (``distillation_info()``).
    """

    _tag_names = ["hf_unlearn", "undo"]

    def __init__(
        self,
        model: PreTrainedModel | str,
        args: UndoConfig | None = None,
        train_dataset: Dataset | None = None,
        eval_dataset: dict[str, Dataset] | None = None,
        processing_class: PreTrainedTokenizerBase | None = None,
        data_collator: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]] | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple[torch.optim.Optimizer | None, torch.optim.lr_scheduler.LambdaLR | None] = (None, None),
        evaluators: dict[str, Evaluator] | None = None,
    ):
        if args is None:
            args = UndoConfig(output_dir="undo_output")
        if not isinstance(args, UndoConfig):
            raise TypeError(f"args must be an UndoConfig, got {type(args).__name__}")
        if train_dataset is None:
            raise ValueError("UndoTrainer needs train_dataset: the text the teacher's outputs are distilled on")
        if args.distill_tolerance is not None and not (isinstance(eval_dataset, dict) and "retain" in eval_dataset):
            raise ValueError(
                f"distill_tolerance={args.distill_tolerance} compares retain losses: pass eval_dataset={{'retain': ...}}, or set distill_tolerance=None"
            )
        self.stopper = DistillationStopCallback(args.distill_tolerance, args.max_distill_tokens)
        super().__init__(
            model, args, train_dataset, "distillation", eval_dataset, processing_class, data_collator,
            [*(callbacks or []), self.stopper], optimizers, evaluators,
        )  # fmt: skip
        if self.is_fsdp_enabled:  # the teacher only runs forwards: sharded like the student, never whole on every process
            shard_frozen(self.teacher)
        else:
            self.teacher.to(self.args.device)

    def prepare_model(self, model: nn.Module, args: UndoConfig, processing_class: PreTrainedTokenizerBase, eval_dataset: Any) -> nn.Module:
        """The teacher, a frozen copy of ``model`` taken first; then ``model`` noised, all of it trained (an
        ``UnlearnTrainer`` leaves most weights frozen; the authors distill into every weight). A tokenizer with more
        tokens than the model's embedding has rows is another model's: refused, before any token indexes past it."""
        rows = model.get_input_embeddings().num_embeddings
        if len(processing_class) > rows:
            raise ValueError(
                f"processing_class has {len(processing_class)} tokens and the model's embedding {rows} rows: it is another "
                "model's tokenizer; pass the unlearned model's own"
            )
        self.teacher = copy.deepcopy(model).eval().requires_grad_(False)
        self.teacher.config.use_cache = False
        model.requires_grad_(True)
        return noise_weights_(model, args.noise_alpha, args.noise_beta, args.noise_seed)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, Any]]:
        """``distillation_loss`` of the student's next-token distributions to the teacher's, padding excluded: the mean
        over the tokens of every process's batch, so that N processes train as one on the same global batch."""
        with torch.no_grad():
            teacher_logits = lm_outputs(self.teacher, inputs).logits
        logits = lm_outputs(model, inputs).logits
        mask = inputs["labels"][:, 1:] != IGNORE_INDEX
        num_tokens = None
        if self.accelerator.num_processes > 1:
            # DDP averages the processes' gradients: each divides its sum by the global token count over N, so that
            # the average is the global token mean whatever each process's share of the tokens (texts differ in length).
            num_tokens = self.accelerator.reduce(mask.sum(), reduction="sum").clamp(min=1) / self.accelerator.num_processes
        loss = distillation_loss(logits[:, :-1], teacher_logits[:, :-1], mask, num_tokens)
        return (loss, {"logits": logits}) if return_outputs else loss

    def train(self, *args: Any, **kwargs: Any):
        """``Trainer.train``, after measuring the teacher's retain loss for ``distill_tolerance``."""
        if self.stopper.tolerance is not None:
            self.stopper.teacher_retain_loss = self.teacher_retain_loss()
        return super().train(*args, **kwargs)

    def teacher_retain_loss(self) -> float:
        """The teacher's token-mean cross-entropy on ``eval_dataset["retain"]``, computed as the student's
        ``eval_retain_loss`` is (``prediction_step``), over every process's share."""
        total, count = 0.0, 0
        for inputs in self.get_eval_dataloader("retain"):
            _, sums, counts = self.prediction_step(self.teacher, inputs, prediction_loss_only=True)
            sums, counts = self.accelerator.gather_for_metrics((sums, counts))
            total, count = total + float(sums.sum()), count + int(counts.sum())
        return total / max(count, 1)

    def distillation_info(self) -> dict[str, Any]:
        """What the distillation did: noise, tokens and steps, whether it reached the tolerance, and its tokens as a
        share of the base model's pretraining tokens where ``PRETRAINING_TOKENS`` knows the model (the model the
        teacher was unlearned from, where its folder records it: ``unlearned_from``)."""
        name = unlearned_from(self.teacher)
        pretrained_on = pretraining_tokens(name)
        tokens = int(self.state.num_input_tokens_seen)
        student = [entry[f"eval_{METRIC}"] for entry in self.state.log_history if f"eval_{METRIC}" in entry]
        return {
            "base_model": name,
            "noise_alpha": self.args.noise_alpha,
            "noise_beta": self.args.noise_beta,
            "noise_seed": self.args.noise_seed,
            "distill_tokens": tokens,
            "steps": self.state.global_step,
            "distill_tolerance": self.args.distill_tolerance,
            "teacher_retain_loss": self.stopper.teacher_retain_loss,
            "student_retain_loss": student[-1] if student else None,
            "tolerance_reached": self.stopper.reached_at is not None,
            "tolerance_reached_at_step": self.stopper.reached_at,
            "max_distill_tokens": self.args.max_distill_tokens,
            "pretraining_tokens": pretrained_on,
            "distill_to_pretraining_tokens": tokens / pretrained_on if pretrained_on else None,
        }

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """``Trainer.save_model``, and, when called by the user (not for a checkpoint), ``distillation_info.json``."""
        super().save_model(output_dir, _internal_call)
        if not _internal_call and self.is_world_process_zero():
            path = Path(output_dir or self.args.output_dir) / DISTILLATION_INFO_NAME
            path.write_text(json.dumps(self.distillation_info(), indent=2) + "\n")
