"""Measure robustness the one way every figure of this package is made: attack suites and a report.

The demo, the benchmarks and the recipes call ``robustness_report``: every model of a run (the
unlearned ones and the untouched ``no_unlearning`` baseline) goes through the same ``AttackSuite``
on the same data, and the report puts the attacker's best over the suite side by side.
"""

from __future__ import annotations

from typing import Any

from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .attacks import AttackSuite
from .evaluation.evaluators import Evaluator
from .evaluation.report import RobustnessReport


def robustness_report(
    title: str,
    models: dict[str, PreTrainedModel],
    suite: AttackSuite,
    *,
    attack_dataset: Dataset,
    eval_dataset: dict[str, Dataset],
    processing_class: PreTrainedTokenizerBase,
    evaluators: dict[str, Evaluator] | None = None,
    retain_dataset: Dataset | None = None,
    baseline: str = "no_unlearning",
    details: dict[str, Any] | None = None,
    resume: bool = False,
) -> RobustnessReport:
    """Attack each of ``models`` ({run name: model}, ``baseline`` the untouched one) with ``suite``.

    The models are not modified: every attack runs on a fresh copy. Run ``r``'s attacks write to
    ``<attack output_dir>/<r>``; ``resume`` reads finished attacks back (``AttackSuite.run``).
    """
    results = {
        name: suite.in_folder(name).run(
            model,
            attack_dataset=attack_dataset,
            eval_dataset=eval_dataset,
            evaluators=evaluators,
            processing_class=processing_class,
            retain_dataset=retain_dataset if suite.needs_retain else None,
            resume=resume,
        )
        for name, model in models.items()
    }
    return RobustnessReport.from_suites(title, results, baseline=baseline, details=details)
