"""Evaluation: held-out losses, multiple-choice and fact accuracy, and the robustness report."""

from .evaluators import EvaluatorsMixin, FactEvaluator, MCQEvaluator
from .facts import fact_accuracy, fact_metrics, fact_scores
from .mcq import mcq_accuracy, mcq_letter_logits, mcq_metrics, mcq_prompt
from .report import RobustnessReport, disruption

__all__ = [
    "EvaluatorsMixin",
    "FactEvaluator",
    "MCQEvaluator",
    "RobustnessReport",
    "disruption",
    "fact_accuracy",
    "fact_metrics",
    "fact_scores",
    "mcq_accuracy",
    "mcq_letter_logits",
    "mcq_metrics",
    "mcq_prompt",
]
