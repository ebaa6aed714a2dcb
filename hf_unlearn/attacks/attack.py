"""``Attack``: what one kind of attack does, and ``ATTACK_KINDS``, every kind by name (``RelearnAttackConfig.kind``).

A kind is one file (``fine_tune``, ``quantize``, ``in_context``, ``prompt``) holding a class that follows the
``Attack`` protocol and registers itself with ``@register_attack``; ``AttackSuite`` runs each of its attacks through
``ATTACK_KINDS[config.kind]`` and takes every attack's best point the same way. Kinds that train nothing score the
model with ``evaluate_point`` (no Trainer) and build their curve with ``evaluate_variants``. docs/design.md shows
a new kind, start to finish.
"""

from __future__ import annotations

import dataclasses
import gc
import math
from collections.abc import Iterable
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from datasets import Dataset
from torch import nn
from transformers import PreTrainedTokenizerBase, TrainingArguments

from ..data.processing import prepare_eval_datasets
from ..evaluation.common import eval_mode, forward_examples, over_processes
from ..evaluation.disruption import METRIC, broke_the_model
from ..evaluation.evaluators import Evaluator, FactEvaluator
from ..evaluation.samples import greedy_completions, sample_prompts
from ..losses import token_loss_sums

# The kind of an attack that names none (results saved before attacks had kinds: benchmarks/migrate_state.py).
FINE_TUNE = "fine_tune"


@dataclasses.dataclass
class AttackRun:
    """What one attack brought back: its ``curve`` of evaluated points, the unattacked model's first (step 0; later
    points of an attack that trains nothing carry the ``"variant"`` they tried), and its ``best`` point by the
    attacker's metric, never a diverged one (None: no point was valid). ``note`` follows its settings in tables."""

    curve: list[dict[str, Any]]
    best: dict[str, Any] | None
    note: str = ""


class Attack(Protocol):
    """One kind of attack. ``name`` is its ``RelearnAttackConfig.kind``; ``trains``: it changes the weights by
    training (only such attacks can tell that a suite measured nothing when they all broke the model); ``settings``:
    the ``RelearnAttackConfig`` fields only this kind reads (left at their defaults by every other kind; a preset's
    common settings reach only this kind's attacks)."""

    name: str
    trains: bool
    settings: tuple[str, ...]

    def check(self, model: nn.Module, config: TrainingArguments) -> None:
        """Refuse, before any attack of the suite runs, settings this model cannot take."""

    def describe(self, config: TrainingArguments) -> str:
        """The attack's settings in a few words, for tables."""

    def run(
        self, model: nn.Module, config: TrainingArguments, *, attack_dataset: Dataset, eval_dataset: dict[str, Dataset],
        evaluators: dict[str, Evaluator], processing_class: PreTrainedTokenizerBase, retain_dataset: Dataset | None,
        start: dict[str, Any] | None, wandb: Any,
    ) -> AttackRun:  # fmt: skip
        """Attack ``model`` (left as it is: attack a copy) with ``config`` (a ``RelearnAttackConfig``). ``start``: the
        unattacked model's point when an attack before this one evaluated it (else evaluate it); ``wandb``: the W&B
        run to log into, or None."""


A = TypeVar("A")
ATTACK_KINDS: dict[str, Attack] = {}


def register_attack(cls: type[A]) -> type[A]:
    """Class decorator: ``cls()`` is the kind ``cls.name`` of ``RelearnAttackConfig.kind`` from now on."""
    ATTACK_KINDS[cls.name] = cls()
    return cls


def diverged(point: dict[str, float], start: dict[str, float], retain_ratio: float) -> bool:
    """An attack point says nothing about robustness: a metric is NaN/inf, or the retain loss rose past
    ``retain_ratio`` times its pre-attack value (``start``), i.e. the attack broke the model."""
    values = [v for k, v in point.items() if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not all(math.isfinite(v) for v in values):
        return True
    return METRIC in point and METRIC in start and broke_the_model(start[METRIC], point[METRIC], retain_ratio)


def best_of(curve: list[dict[str, float]], metric: str, greater_is_better: bool) -> dict[str, float]:
    """The best point of ``curve`` by ``metric`` (``eval_`` prefix optional), skipping diverged and non-finite points."""
    metric = metric.removeprefix("eval_")
    evaluated = [point for point in curve if metric in point]
    if not evaluated:
        raise ValueError(f"no evaluation of {metric!r} has run yet: call train() (with eval_on_start) or evaluate() first")
    valid = [point for point in evaluated if not point.get("diverged") and math.isfinite(point[metric])]
    if not valid:
        raise ValueError(f"every evaluation of {metric!r} diverged (NaN/inf or a broken model): there is no best point")
    pick = max if greater_is_better else min
    return pick(valid, key=lambda point: point[metric])


def best_or_none(curve: list[dict[str, Any]], config: TrainingArguments) -> dict[str, Any] | None:
    """``best_of`` by the attacker's metric, or None when no point is valid (every one non-finite or diverged)."""
    try:
        return best_of(curve, config.metric_for_best_model, bool(config.greater_is_better))
    except ValueError:
        return None


def split_loss(model: nn.Module, dataset: Dataset, pad_token_id: int, batch_size: int) -> float:
    """The token-mean loss of ``model`` on a prepared split, as ``CausalLMTrainer.evaluate`` computes it: each
    sequence's summed token loss over every token counted, summed in the Trainer's order (the same float)."""

    def score(indices: list[int]) -> list[tuple[float, int]]:
        batch, logits = forward_examples(model, dataset.select(indices), pad_token_id)
        sums, counts = token_loss_sums(logits, batch["labels"])
        return list(zip(sums.tolist(), counts.tolist()))

    sums, counts = zip(*over_processes(score, len(dataset), batch_size, desc="evaluating"))
    return float(np.array(sums).sum() / max(int(np.array(counts).sum()), 1))


def evaluate_point(
    model: nn.Module, config: TrainingArguments, eval_dataset: dict[str, Dataset], evaluators: dict[str, Evaluator],
    tokenizer: PreTrainedTokenizerBase,
) -> dict[str, Any]:  # fmt: skip
    """One evaluation of ``model``, no Trainer: ``{"<split>_loss": ..., "<evaluator>_<metric>": ..., "samples": [...]}``,
    the metrics and text samples ``RelearnAttackTrainer`` records at its start, with ``config``'s evaluation settings."""
    datasets = prepare_eval_datasets(eval_dataset, tokenizer, text_field=config.dataset_text_field, max_length=config.max_length)
    model.to(config.device)  # where the Trainer put it
    autocast = torch.autocast(config.device.type, dtype=torch.bfloat16, enabled=config.bf16)  # the Trainer's mixed precision
    with torch.no_grad(), eval_mode(model), autocast:
        point = {f"{name}_loss": split_loss(model, data, tokenizer.pad_token_id, config.per_device_eval_batch_size) for name, data in datasets.items()}
        point |= {f"{name}_{key}": value for name, evaluator in evaluators.items() for key, value in evaluator(model, tokenizer).items()}
        facts = next((e.dataset for e in evaluators.values() if isinstance(e, FactEvaluator)), None)
        prompts = sample_prompts(datasets["forget"], facts, tokenizer, config.text_samples)
        if prompts:
            point["samples"] = greedy_completions(model, tokenizer, prompts)
    return point


Variant = tuple[str, nn.Module, dict[str, Dataset], dict[str, Evaluator]]


def evaluate_variants(
    variants: Iterable[Variant], model: nn.Module, config: TrainingArguments, eval_dataset: dict[str, Dataset],
    evaluators: dict[str, Evaluator], tokenizer: PreTrainedTokenizerBase, start: dict[str, Any] | None, wandb: Any,
) -> AttackRun:  # fmt: skip
    """The run of an attack that trains nothing: each of ``variants`` (``(name, model, eval_dataset, evaluators)``,
    made one at a time) evaluated once, on the whole evaluation set. Its best is the best variant (or the unattacked
    model), variants that broke the model (as ``diverged`` defines it) never counted."""
    if start is None:  # the first attack of the suite: the unattacked model, evaluated once for all of them
        start = evaluate_point(model, config, eval_dataset, evaluators, tokenizer)
    points = []
    for variant, attacked, variant_eval, variant_evaluators in variants:
        point = {"step": 0, "variant": variant, **evaluate_point(attacked, config, variant_eval, variant_evaluators, tokenizer)}
        if diverged(point, start, config.divergence_retain_ratio):
            point["diverged"] = True
        points.append(point)
        if wandb is not None:
            wandb.log({k: v for k, v in point.items() if isinstance(v, (int, float)) and k != "step"})
        del attacked
        gc.collect()
    curve = [{"step": 0, **start}, *points]
    # Nothing fit (the split, the context) or applied: say so, rather than "recovered nothing".
    return AttackRun(curve, best_or_none(curve, config), "" if points else "no variant fit: nothing measured")
