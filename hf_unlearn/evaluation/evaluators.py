"""Evaluators that run inside ``Trainer.evaluate()``, so their metrics land in logs, curves and reports."""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from typing import Any, Protocol
from unittest import mock

from datasets import Dataset
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..data.facts import facts
from ..data.recipes import MCQ_COLUMNS
from ..data.schema import check_columns, check_mcq_rows, describe
from .facts import fact_accuracy
from .mcq import mcq_accuracy


class Evaluator(Protocol):
    def __call__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> dict[str, float]: ...


@dataclass
class MCQEvaluator:
    """Zero-shot multiple-choice accuracy (WMDP, MMLU): ``accuracy`` and ``correct_prob``, prompted as
    lm-evaluation-harness does; ``subject`` ("biology", ``WMDP_SUBJECTS["bio"]``) adds its description line."""

    dataset: Dataset
    batch_size: int = 8
    subject: str | None = None

    def __post_init__(self):  # a bad answer index must fail here, not after every forward pass
        check_columns(self.dataset, "MCQEvaluator", MCQ_COLUMNS)
        check_mcq_rows(self.dataset, "MCQEvaluator", describe(MCQ_COLUMNS), num_choices=None)

    def __call__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> dict[str, float]:
        return mcq_accuracy(model, tokenizer, self.dataset, self.batch_size, self.subject)


@dataclass
class FactEvaluator:
    """Greedy-answer accuracy on facts: ``accuracy`` and ``answer_prob``."""

    dataset: Dataset
    batch_size: int = 32

    def __post_init__(self):  # an empty answer would count as reproduced
        self.dataset = facts(self.dataset)

    def __call__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> dict[str, float]:
        return fact_accuracy(model, tokenizer, self.dataset, self.batch_size)



@dataclass
class HarnessEvaluator:
    """lm-evaluation-harness tasks by name (``wmdp_bio``, ``mmlu``, or tasks of YAML files under
    ``include_path``), run on the model in hand: ``<task>_<metric>`` (``wmdp_bio_acc``). Needs the ``lm-eval``
    extra (``pip install hf_unlearn[lm-eval]``). ``limit``: questions per task (the harness's ``limit``)."""

    tasks: list[str]
    include_path: str | None = None
    limit: int | float | None = None
    batch_size: int = 8

    def __call__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> dict[str, float]:
        try:
            from lm_eval import simple_evaluate
            from lm_eval.models.huggingface import HFLM
        except ImportError as error:
            raise ImportError("HarnessEvaluator needs lm-evaluation-harness: pip install 'hf_unlearn[lm-eval]'") from error
        device = str(next(model.parameters()).device)
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=self.batch_size, device=device)
        # The harness adds the working directory's git hash (its `git describe` prints "fatal: not a git repository"
        # outside a clone) and torch's environment dump (a `pip list` per call) to results we do not keep.
        with mock.patch("lm_eval.evaluator.get_git_commit_hash", return_value=None), mock.patch("lm_eval.evaluator.add_env_info"):
            results = simple_evaluate(
                model=lm, tasks=list(self.tasks), limit=self.limit, task_manager=harness_task_manager(self.include_path),
                log_samples=False, bootstrap_iters=0, verbosity="ERROR",
            )  # fmt: skip
        if results is None:  # not the main process
            return {}
        return {
            f"{task}_{key.split(',')[0]}": float(value)
            for task, metrics in results["results"].items()
            for key, value in metrics.items()
            if "," in key and "stderr" not in key and isinstance(value, (int, float))
        }


@functools.cache
def harness_task_manager(include_path: str | None = None) -> Any:
    """lm-evaluation-harness's ``TaskManager`` (its tasks and those under ``include_path``), built once per process:
    building it reads the harness's ~15,000 task files (14 s on a 2-core CPU), and a suite's every evaluation point
    runs the harness evaluator."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path)


def check_harness_tasks(tasks: list[str], include_path: str | None = None) -> None:
    """Every task (or pattern) names a task lm-evaluation-harness knows, checked before any model loads: a misspelled
    one was a KeyError traceback inside the first attack."""
    manager = harness_task_manager(include_path)
    unknown = [task for task in tasks if not manager.match_tasks([task])]
    if unknown:
        close = difflib.get_close_matches(unknown[0], manager.all_tasks, n=1)
        raise ValueError(
            f"--lm_eval_tasks: {', '.join(unknown)} {'is not a task' if len(unknown) == 1 else 'are not tasks'} of lm-evaluation-harness"
            + (f" (did you mean {close[0]}?)" if close else "") + ": give the harness's task names, or --lm_eval_include_path for your own"
        )
