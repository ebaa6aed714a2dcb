"""Unlearn -> attack suite -> report: the one way every figure of this package is made.

The demo, the benchmarks, the sweep and the recipes call these: ``unlearn`` trains a method on a
``Scenario``, ``attack`` runs an ``AttackSuite`` on a model with the scenario's data, and
``robustness_report`` puts every model of a run (the unlearned ones and the untouched
``no_unlearning`` baseline) through the same suite and side by side in a ``RobustnessReport``.
"""

from __future__ import annotations

from typing import Any

from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from .attacks import AttackSuite
from .evaluation.evaluators import Evaluator
from .evaluation.report import RobustnessReport
from .scenarios import Scenario
from .tracking import group_name, wandb_run
from .unlearn_config import UnlearnConfig
from .unlearn_trainer import UnlearnTrainer


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
    wandb_group: str | None = None,
    attack_baseline: bool = True,
) -> RobustnessReport:
    """Attack each of ``models`` ({run name: model}, ``baseline`` the untouched one) with ``suite``.

    The models are not modified: every attack runs on a fresh copy. Run ``r``'s attacks write to
    ``<attack output_dir>/<r>``; ``resume`` reads finished attacks back (``AttackSuite.run``). With
    W&B, the attacks of the unlearned model are runs ``attack/<attack>`` (the baseline's
    ``baseline/attack/<attack>``) in ``wandb_group``, and a ``report`` run holds the table, the
    curves and the headline numbers. ``attack_baseline=False`` only evaluates the baseline
    (``AttackSuite.unattacked``): for a baseline at the metric's ceiling, where attacking it measures nothing.
    """
    wandb_group = wandb_group or group_name(None, "robustness")
    results = {
        name: suite.unattacked(model, attack_dataset, eval_dataset, evaluators, processing_class)
        if name == baseline and not attack_baseline
        else suite.in_folder(name).run(
            model,
            attack_dataset=attack_dataset,
            eval_dataset=eval_dataset,
            evaluators=evaluators,
            processing_class=processing_class,
            retain_dataset=retain_dataset if suite.needs_retain else None,
            resume=resume,
            wandb_group=wandb_group,
            run_prefix="baseline/attack" if name == baseline else "attack",
        )
        for name, model in models.items()
    }
    report = RobustnessReport.from_suites(title, results, baseline=baseline, details=details)
    report_to = next(iter(suite.attacks.values())).report_to
    with wandb_run(report_to, wandb_group, "report", "report", config={"title": title, **(details or {})}) as run:
        if run is not None:
            run.log(report.wandb_media())
            run.summary.update(report.summary())
    return report


def unlearn(
    model: PreTrainedModel | str,
    config: UnlearnConfig,
    scenario: Scenario,
    processing_class: PreTrainedTokenizerBase,
    callbacks: list[TrainerCallback] | None = None,
    peft_config: Any = None,
    wandb_group: str | None = None,
) -> UnlearnTrainer:
    """Unlearn ``scenario.unlearn`` from ``model`` with the method ``config`` names, evaluating on
    ``scenario.eval`` (and its evaluators) at ``config``'s evaluation strategy; returns the trained trainer."""
    trainer = UnlearnTrainer(
        model, config, forget_dataset=scenario.unlearn, retain_dataset=scenario.retain, eval_dataset=scenario.eval,
        evaluators=scenario.evaluators, processing_class=processing_class, callbacks=callbacks, peft_config=peft_config,
        data_sources=scenario.sources, data_arguments=scenario.details.get("data_arguments", {}),
    )  # fmt: skip
    run_config = {"method": config.method, "method_settings": trainer.method_settings(), "data": {**scenario.sources, **scenario.details}}
    # Left open: the caller may still evaluate with this trainer, whose WandbCallback logs into the run.
    group = wandb_group or group_name(config.run_name, config.method)
    with wandb_run(config.report_to, group, "unlearn", "unlearn", run_config, finish=False):
        trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    return trainer


def attack(
    model: PreTrainedModel, suite: AttackSuite, scenario: Scenario, processing_class: PreTrainedTokenizerBase,
    resume: bool = False, wandb_group: str | None = None,
):  # fmt: skip
    """``suite`` on ``model`` with the scenario's attack split, held-out evaluation and evaluators."""
    return suite.run(
        model, attack_dataset=scenario.attack, eval_dataset=scenario.eval, evaluators=scenario.evaluators,
        processing_class=processing_class, retain_dataset=scenario.retain if suite.needs_retain else None, resume=resume,
        wandb_group=wandb_group,
    )  # fmt: skip
