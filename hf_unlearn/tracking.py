"""W&B runs for an unlearn -> attack -> report pipeline: one group, one run per stage.

Each stage opens its own run (named, in the pipeline's group, with a ``job_type``) on the main
process only: ``unlearn``, then ``attack/<attack>`` for every attack of the suite
(``baseline/attack/<attack>`` on the untouched model), then ``report`` with the robustness table,
the curves and the headline numbers. A trainer inside a stage logs into that run (transformers'
``WandbCallback`` uses an open run rather than opening one). The ``unlearn`` run stays open after
its stage, because its trainer may still log (``trainer.evaluate()``, as ``hf-unlearn unlearn``
does): the next stage, ``finish_open_run`` or the end of the process finishes it. Nothing happens
unless ``report_to`` names ``wandb``.
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


def finish_open_run() -> None:
    """Finish the W&B run a stage left open, if any."""
    import sys

    if "wandb" in sys.modules and sys.modules["wandb"].run is not None:
        sys.modules["wandb"].run.finish()


def open_run_url() -> str | None:
    """The open W&B run's page (None offline, or without a run)."""
    import sys

    run = sys.modules["wandb"].run if "wandb" in sys.modules else None
    return getattr(run, "url", None) if run is not None else None


@contextmanager
def wandb_run(
    report_to: str | Sequence[str] | None, group: str, name: str, job_type: str, config: dict[str, Any] | None = None, finish: bool = True
) -> Iterator[Any]:
    """The W&B run of one stage, on the main process (None elsewhere, or when not reporting to W&B).

    An earlier stage's open run is finished first; ``finish=False`` leaves this one open after the stage.
    """
    from accelerate import PartialState

    if not reports_to_wandb(report_to) or not PartialState().is_main_process:
        yield None
        return
    import wandb

    run = wandb.init(name=name, group=group, job_type=job_type, config=config or {}, reinit="finish_previous")
    try:
        yield run
    finally:
        if finish:
            run.finish()
