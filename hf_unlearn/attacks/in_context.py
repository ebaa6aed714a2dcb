"""In-context relearning (``kind="in_context"``, Shumailov et al. 2024): ``k`` examples of the attack split before
each evaluated text, for each ``k`` of ``in_context_shots`` that the split and the model's context hold; no training."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from datasets import Dataset
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..evaluation.evaluators import Evaluator
from .attack import AttackRun, Variant, evaluate_variants, register_attack
from .inputs import in_context_prefix, prefix_room, prefixed_evaluators, tokenized, with_prefix
from .relearn_config import RelearnAttackConfig


@register_attack
class InContext:
    name = "in_context"
    trains = False
    settings = ("in_context_shots",)

    def check(self, model: nn.Module, config: RelearnAttackConfig) -> None:
        pass  # shots that do not fit are skipped, and the attack says so when none fit

    def describe(self, config: RelearnAttackConfig) -> str:
        return f"{'/'.join(map(str, config.in_context_shots))} attack examples in context, no training"

    def run(
        self, model: nn.Module, config: RelearnAttackConfig, *, attack_dataset: Dataset, eval_dataset: dict[str, Dataset],
        evaluators: dict[str, Evaluator], processing_class: PreTrainedTokenizerBase, retain_dataset: Dataset | None,
        start: dict[str, Any] | None, wandb: Any,
    ) -> AttackRun:  # fmt: skip
        variants = self.variants(model, config, attack_dataset, eval_dataset, evaluators, processing_class)
        return evaluate_variants(variants, model, config, eval_dataset, evaluators, processing_class, start, wandb)

    def variants(
        self, model: nn.Module, config: RelearnAttackConfig, attack_dataset: Dataset, eval_dataset: dict[str, Dataset],
        evaluators: dict[str, Evaluator], tokenizer: PreTrainedTokenizerBase,
    ) -> Iterator[Variant]:  # fmt: skip
        forget = tokenized(eval_dataset["forget"], tokenizer, config.dataset_text_field)
        room = prefix_room(forget, model, config.max_length)
        for shots in sorted(set(config.in_context_shots)):  # fewest first: once one does not fit, more will not either
            if shots > len(attack_dataset):
                break
            prefix = in_context_prefix(attack_dataset, tokenizer, shots, config.dataset_text_field)
            prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
            if len(prefix_ids) > room:
                break
            prefixed = {**eval_dataset, "forget": with_prefix(forget, prefix_ids, tokenizer)}
            yield f"{shots} in context", model, prefixed, prefixed_evaluators(evaluators, lambda fact, prefix=prefix: prefix)
