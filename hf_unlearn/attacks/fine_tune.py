"""The fine-tuning attack (``kind="fine_tune"``): ``RelearnAttackTrainer`` trains a copy of the model on the attack
split, evaluated every ``eval_steps``, and stops where it broke the model."""

from __future__ import annotations

import copy
import gc
from typing import Any

from datasets import Dataset
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..evaluation.evaluators import Evaluator
from .attack import FINE_TUNE, AttackRun, best_or_none, register_attack
from .relearn_config import RelearnAttackConfig
from .relearn_trainer import RelearnAttackTrainer


@register_attack
class FineTune:
    name = FINE_TUNE
    trains = True
    settings = ("use_peft", "interleave_retain")

    def check(self, model: nn.Module, config: RelearnAttackConfig) -> None:
        pass  # the trainer checks its own settings when it starts

    def describe(self, config: RelearnAttackConfig) -> str:
        """``"adamw_torch lr 1e-04, clip 1, 60 steps, LoRA r16"``."""
        optim = str(getattr(config.optim, "value", config.optim))
        parts = [f"{optim} lr {config.learning_rate:.0e}", f"clip {config.max_grad_norm:g}" if config.max_grad_norm > 0 else "no clip"]
        parts.append(f"{config.max_steps} steps" if config.max_steps > 0 else f"{config.num_train_epochs:g} epochs")
        if config.use_peft:
            parts.append(f"LoRA r{config.lora_r}")
        if config.attack_modules:
            parts.append("modules " + "/".join(config.attack_modules))
        if config.interleave_retain:
            parts.append("retain-interleaved")
        return ", ".join(parts)

    def run(
        self, model: nn.Module, config: RelearnAttackConfig, *, attack_dataset: Dataset, eval_dataset: dict[str, Dataset],
        evaluators: dict[str, Evaluator], processing_class: PreTrainedTokenizerBase, retain_dataset: Dataset | None,
        start: dict[str, Any] | None, wandb: Any,
    ) -> AttackRun:  # fmt: skip
        # The Trainer logs into the W&B run the suite opened (wandb's current run).
        trainer = RelearnAttackTrainer(
            copy.deepcopy(model),
            config,
            attack_dataset=attack_dataset,
            eval_dataset=eval_dataset,
            retain_dataset=retain_dataset if config.interleave_retain else None,
            processing_class=processing_class,
            evaluators=evaluators,
            start_point=start,
        )
        trainer.train()
        curve = trainer.attack_curve()
        del trainer  # one extra copy of the model at a time
        gc.collect()
        return AttackRun(curve, best_or_none(curve, config))
