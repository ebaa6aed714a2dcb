"""W&B runs for an unlearn -> attack -> report pipeline: one group, one run per stage.

The Trainer's ``WandbCallback`` logs into a run that already exists, so each stage opens its own
(named, in the pipeline's group, with a ``job_type``) and closes it when done: ``unlearn``, then
``attack/<attack>`` for every attack of the suite (``baseline/attack/<attack>`` on the untouched
model), then ``report`` with the robustness table, the curves and the headline numbers. Nothing
happens unless ``report_to`` names ``wandb``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any


def reports_to_wandb(report_to: str | Sequence[str] | None) -> bool:
    values = [report_to] if isinstance(report_to, str) else list(report_to or [])
    return "wandb" in values or "all" in values


def group_name(run_name: str | None, method: str) -> str:
    """The pipeline's W&B group: ``run_name``, or the method and the time."""
    return run_name or f"{method}-{time.strftime('%Y%m%d-%H%M%S')}"


@contextmanager
def wandb_run(report_to: str | Sequence[str] | None, group: str, name: str, job_type: str, config: dict[str, Any] | None = None) -> Iterator[Any]:
    """A W&B run for one stage of the pipeline (None when not reporting to W&B)."""
    if not reports_to_wandb(report_to):
        yield None
        return
    import wandb

    run = wandb.init(name=name, group=group, job_type=job_type, config=config or {}, reinit="finish_previous")
    try:
        yield run
    finally:
        run.finish()
