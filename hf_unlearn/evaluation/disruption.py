"""Disruption, measured in one place: how much unlearning (or an attack) changed what it should not.

The metric is the loss on held-out general text, ``retain_loss`` (``eval_retain_loss`` in a trainer's
logs): each scenario's ``eval["retain"]``. A budget is the largest rise of it allowed, in nats
(MUDMAN's +0.05) or relative to its start (CIR's +0.1 %). The budget callback, the sweep's pruning,
the model card, the robustness report and the attacks' divergence check all compute it here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

METRIC = "retain_loss"
UNITS = ("nats", "relative")


def change(start: float, value: float) -> dict[str, float]:
    """The metric's change from ``start`` to ``value``: absolute (nats) and relative to ``start``."""
    return {"absolute": value - start, "relative": (value - start) / start}


def describe(start: float, value: float) -> str:
    """``"+0.0123 nats, +0.45 %"``."""
    rise = change(start, value)
    return f"{rise['absolute']:+.4f} nats, {100 * rise['relative']:+.2f} %"


@dataclass(frozen=True)
class DisruptionBudget:
    """The largest rise of the disruption metric allowed: ``amount`` nats, or ``amount`` times its start."""

    amount: float
    unit: str = "relative"

    def __post_init__(self):
        if self.unit not in UNITS:
            raise ValueError(f"disruption_unit={self.unit!r} is invalid: use one of {', '.join(UNITS)}")
        if not self.amount > 0:
            raise ValueError(f"disruption_budget={self.amount!r} is invalid: it must be > 0 (e.g. 0.05 nats, or 0.001 relative: +0.1 %)")

    def rise(self, start: float, value: float) -> float:
        """The rise from ``start`` to ``value`` in this budget's unit."""
        return change(start, value)["absolute" if self.unit == "nats" else "relative"]

    def exceeded(self, start: float, value: float) -> bool:
        """Beyond budget; a non-finite value always is."""
        return not math.isfinite(value) or self.rise(start, value) > self.amount

    def __str__(self) -> str:
        return f"+{self.amount:g} nats" if self.unit == "nats" else f"+{100 * self.amount:g} %"


def broke_the_model(start: float, value: float, ratio: float) -> bool:
    """Training broke the model: its disruption metric rose past ``ratio`` times its value before (or is not finite).
    Unlearning stops there (``UnlearnConfig.max_retain_loss_ratio``); an attack's point says nothing about what the
    weights still know (``RelearnAttackConfig.divergence_retain_ratio``)."""
    return not math.isfinite(value) or value > ratio * start
