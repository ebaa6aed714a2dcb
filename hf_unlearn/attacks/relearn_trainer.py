"""``RelearnAttackTrainer``: fine-tune an unlearned model on forget data and measure what comes back."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from datasets import Dataset
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from ..causal_lm_trainer import CausalLMTrainer
from ..data.pairing import RetainStream
from ..evaluation.evaluators import Evaluator, FactEvaluator
from ..evaluation.samples import greedy_completions, sample_prompts
from ..models import with_lora_adapter
from ..targets import resolve_target_modules
from .attack import FINE_TUNE, best_of, diverged
from .relearn_config import RelearnAttackConfig

_TIMING_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second", "_model_preparation_time")


class _StopWhenDiverged(TrainerCallback):
    """Stops the attack at its first diverged evaluation: nothing after it can count."""

    def __init__(self, trainer: RelearnAttackTrainer):
        self.trainer = trainer

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        curve = self.trainer.attack_curve()
        if curve and curve[-1].get("diverged"):
            control.should_training_stop = True


class RelearnAttackTrainer(CausalLMTrainer):
    """The relearning attack: fine-tuning on the *attack* split of the forget data.

    ``eval_dataset`` must be ``{"forget": held-out forget split, "retain": ...}`` (retain optional);
    ``evaluators`` add accuracies (``{"facts": FactEvaluator(split_b)}``). All are evaluated every
    ``eval_steps`` and before the first step; ``attack_curve()`` returns the recovery curve and
    ``best_point()`` the attacker's best point: the best ``metric_for_best_model`` (by default the
    lowest held-out forget loss; ``eval_facts_accuracy`` with ``greater_is_better`` for facts).

    With ``args.interleave_retain`` every step alternates a forget step and a retain step on
    ``retain_dataset`` (the WMDP attack of the MUDMAN paper, which keeps the attacked model
    generally capable); with ``args.use_peft`` the attack trains a LoRA adapter. Evaluations where
    the attack broke the model are marked ``"diverged"`` in the curve (see ``RelearnAttackConfig``),
    the attack stops there, and ``best_point()`` never picks them.

    ``start_point``: the pre-attack evaluation when the caller has it already (``AttackSuite``
    evaluates the unattacked model once for all its attacks); step 0 is then not evaluated again.
    """

    _tag_names = ["hf_unlearn", "relearning-attack"]

    def __init__(
        self,
        model: PreTrainedModel | str,
        args: RelearnAttackConfig | None = None,
        attack_dataset: Dataset | None = None,
        eval_dataset: dict[str, Dataset] | None = None,
        retain_dataset: Dataset | None = None,
        processing_class: PreTrainedTokenizerBase | None = None,
        data_collator: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]] | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple[torch.optim.Optimizer | None, torch.optim.lr_scheduler.LambdaLR | None] = (None, None),
        evaluators: dict[str, Evaluator] | None = None,
        start_point: dict[str, float] | None = None,
    ):
        if args is None:
            args = RelearnAttackConfig(output_dir="relearn_attack_output")
        if not isinstance(args, RelearnAttackConfig):
            raise TypeError(f"args must be a RelearnAttackConfig, got {type(args).__name__}")
        if args.kind != FINE_TUNE:  # the other kinds train nothing: AttackSuite runs them through their Attack
            raise ValueError(f"RelearnAttackTrainer fine-tunes: kind={args.kind!r} is run by AttackSuite, not a trainer")
        if attack_dataset is None:
            raise ValueError("RelearnAttackTrainer needs attack_dataset (the attack split of the forget data)")
        if not isinstance(eval_dataset, dict) or "forget" not in eval_dataset:
            raise ValueError('eval_dataset must be a dict with a held-out "forget" split (and optionally "retain")')
        if args.interleave_retain != (retain_dataset is not None):
            raise ValueError(
                "interleave_retain=True needs a retain_dataset to interleave"
                if args.interleave_retain
                else "a retain_dataset is only used by a retain-interleaved attack: set interleave_retain=True or drop it"
            )
        if start_point is not None and args.eval_on_start:
            args = dataclasses.replace(args, eval_on_start=False)
        super().__init__(model, args, attack_dataset, "attack", eval_dataset, processing_class, data_collator, callbacks, optimizers, evaluators)
        self.start_point = start_point
        self.add_callback(_StopWhenDiverged(self))
        facts = next((e.dataset for e in self.evaluators.values() if isinstance(e, FactEvaluator)), None)
        self.sample_prompts = sample_prompts(self.eval_dataset["forget"], facts, self.processing_class, args.text_samples)
        self.samples_at: dict[int, list[dict[str, str]]] = {}  # step -> greedy completions of sample_prompts
        self.retain_stream = None
        if retain_dataset is not None:
            self.retain_stream = RetainStream(
                self.prepare_text(retain_dataset, "retain"), self.data_collator, args.per_device_train_batch_size, args.seed, args.world_size, args.process_index
            )

    def prepare_model(
        self, model: nn.Module, args: RelearnAttackConfig, processing_class: PreTrainedTokenizerBase, eval_dataset: Any
    ) -> nn.Module:
        if args.use_peft:  # the adapter trains, everything else stays frozen
            return with_lora_adapter(model, args.lora_config())
        attacked = resolve_target_modules(model, args.attack_modules) if args.attack_modules else None
        for name, param in model.named_parameters():
            param.requires_grad_(attacked is None or name in attacked)
        return model

    def training_step(
        self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        """A forget step; with ``interleave_retain``, the forget step is applied here and a retain step follows."""
        forget_loss = super().training_step(model, inputs, num_items_in_batch)
        if self.retain_stream is None:
            return forget_loss
        if self.args.max_grad_norm > 0:
            self.accelerator.clip_grad_norm_(model.parameters(), self.args.max_grad_norm)
        self.optimizer.step()
        model.zero_grad()
        # The Trainer's loop applies this second step, schedules the learning rate and logs.
        retain_batch = self._prepare_inputs(self.retain_stream.batch(self.state.global_step))
        super().training_step(model, retain_batch, num_items_in_batch)
        return forget_loss

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """``CausalLMTrainer.evaluate``; at the start and whenever the point is the attack's best so far, the greedy
        completions of ``sample_prompts`` too (``attack_curve`` carries them), so the best point always has its text."""
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if eval_dataset is None and self.sample_prompts:
            curve = self.attack_curve()
            try:
                is_best = best_of(curve, self.args.metric_for_best_model, bool(self.args.greater_is_better)) is curve[-1]
            except ValueError:  # nothing valid yet
                is_best = False
            if is_best or self.state.global_step == 0:
                model = self.accelerator.unwrap_model(self.model)
                self.samples_at[self.state.global_step] = greedy_completions(model, self.processing_class, self.sample_prompts)
        return metrics

    def attack_curve(self) -> list[dict[str, float]]:
        """Every evaluation so far, by step: ``[{"step": 0, "forget_loss": ..., "retain_loss": ..., ...}, ...]``.

        Points where the attack broke the model carry ``"diverged": True``; the start and the points that were the
        attack's best when evaluated carry ``"samples"`` (greedy completions of held-out forget prompts).
        """
        points: dict[int, dict[str, float]] = {}
        if self.start_point is not None:
            points[0] = {"step": 0, **self.start_point}
        for entry in self.state.log_history:
            values = {
                key.removeprefix("eval_"): value
                for key, value in entry.items()
                if key.startswith("eval_") and not key.endswith(_TIMING_SUFFIXES)
            }
            if values:
                points.setdefault(entry["step"], {"step": entry["step"]}).update(values)
        for step, samples in self.samples_at.items():
            if step in points:
                points[step]["samples"] = samples
        curve = [points[step] for step in sorted(points)]
        for point in curve[1:]:
            point.pop("diverged", None)
            if diverged(point, curve[0], self.args.divergence_retain_ratio):
                point["diverged"] = True
        return curve

    def best_point(self) -> dict[str, float]:
        """The attacker's best evaluation by ``metric_for_best_model``, the unattacked model (step 0) included
        and diverged evaluations excluded."""
        return best_of(self.attack_curve(), self.args.metric_for_best_model, bool(self.args.greater_is_better))

