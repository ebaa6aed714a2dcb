"""Prompt templates (``kind="prompt"``): each of ``prompt_templates`` before every evaluated text (a fact's prompt
rephrased as a question where the template asks one), those the model's context holds; no training."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from datasets import Dataset
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..evaluation.evaluators import Evaluator
from .attack import AttackRun, Variant, evaluate_variants, register_attack
from .inputs import prefix_room, prefixed_evaluators, prompt_prefix, tokenized, usable_templates, with_prefix
from .relearn_config import RelearnAttackConfig


@register_attack
class Prompt:
    name = "prompt"
    trains = False
    settings = ("prompt_templates",)

    def check(self, model: nn.Module, config: RelearnAttackConfig) -> None:
        pass  # templates that do not fit are skipped, and the attack says so when none fit

    def describe(self, config: RelearnAttackConfig) -> str:
        return f"templates {', '.join(config.prompt_templates) if config.prompt_templates else 'all'}, no training"

    def run(
        self, model: nn.Module, config: RelearnAttackConfig, *, attack_dataset: Dataset, eval_dataset: dict[str, Dataset],
        evaluators: dict[str, Evaluator], processing_class: PreTrainedTokenizerBase, retain_dataset: Dataset | None,
        start: dict[str, Any] | None, wandb: Any,
    ) -> AttackRun:  # fmt: skip
        variants = self.variants(model, config, eval_dataset, evaluators, processing_class)
        return evaluate_variants(variants, model, config, eval_dataset, evaluators, processing_class, start, wandb)

    def variants(
        self, model: nn.Module, config: RelearnAttackConfig, eval_dataset: dict[str, Dataset], evaluators: dict[str, Evaluator],
        tokenizer: PreTrainedTokenizerBase,
    ) -> Iterator[Variant]:  # fmt: skip
        forget = tokenized(eval_dataset["forget"], tokenizer, config.dataset_text_field)
        room = prefix_room(forget, model, config.max_length)
        for template in usable_templates(config.prompt_templates, tokenizer):
            prefix_ids = tokenizer(prompt_prefix(template, tokenizer), add_special_tokens=False)["input_ids"]
            if len(prefix_ids) > room:
                continue
            facts = prefixed_evaluators(evaluators, lambda fact, template=template: prompt_prefix(template, tokenizer, fact["prompt"]))
            yield template, model, {**eval_dataset, "forget": with_prefix(forget, prefix_ids, tokenizer)}, facts
