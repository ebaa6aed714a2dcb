"""Evaluators that run inside ``Trainer.evaluate()``, so their metrics land in logs, curves and reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from datasets import Dataset
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..data.facts import facts
from ..data.hub import MCQ_COLUMNS
from ..data.schema import check_columns, check_mcq_rows, describe
from .facts import fact_accuracy
from .mcq import mcq_accuracy


class Evaluator(Protocol):
    def __call__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> dict[str, float]: ...


@dataclass
class MCQEvaluator:
    """Zero-shot multiple-choice accuracy (WMDP, MMLU): ``accuracy`` and ``correct_prob``."""

    dataset: Dataset
    batch_size: int = 8

    def __post_init__(self):  # a bad answer index must fail here, not after every forward pass
        check_columns(self.dataset, "MCQEvaluator", MCQ_COLUMNS)
        check_mcq_rows(self.dataset, "MCQEvaluator", describe(MCQ_COLUMNS), num_choices=None)

    def __call__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> dict[str, float]:
        return mcq_accuracy(model, tokenizer, self.dataset, self.batch_size)


@dataclass
class FactEvaluator:
    """Greedy-answer accuracy on facts: ``accuracy`` and ``answer_prob``."""

    dataset: Dataset
    batch_size: int = 32

    def __post_init__(self):  # an empty answer would count as reproduced
        self.dataset = facts(self.dataset)

    def __call__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> dict[str, float]:
        return fact_accuracy(model, tokenizer, self.dataset, self.batch_size)

