"""Evaluation: held-out losses, multiple-choice and fact accuracy, and the robustness report."""

from .evaluators import Evaluator, FactEvaluator, HarnessEvaluator, MCQEvaluator
from .facts import fact_accuracy, fact_metrics, fact_scores, known_facts
from .mcq import mcq_accuracy, mcq_letter_logits, mcq_metrics, mcq_prompt
from .report import RobustnessReport, disruption

__all__ = [
    "Evaluator",
    "FactEvaluator",
    "HarnessEvaluator",
    "MCQEvaluator",
    "RobustnessReport",
    "disruption",
    "fact_accuracy",
    "fact_metrics",
    "fact_scores",
    "known_facts",
    "mcq_accuracy",
    "mcq_letter_logits",
    "mcq_metrics",
    "mcq_prompt",
]
