"""``Objective``: what an unlearning method optimises. One per method file.

An objective names its forget and retain losses, the weights they train, and what its losses need
(the original model's outputs, hidden states). How a step is taken from them is the update
procedure's job (``components.procedures``); the registry pairs the two (``register_method``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from .forward import LMOutputs
from .losses import cross_entropy, get_loss


class Objective:
    """Forget and retain losses on model outputs.

    Losses receive the outputs at the weights being differentiated and, for the parts listed in
    ``uses_reference``, the outputs of the original model. Defaults: ``args.unlearning_loss`` on the
    forget batch and cross-entropy on the retain batch, weighted by ``unlearning_rate`` and
    ``retaining_rate``.
    """

    method_name: ClassVar[str]  # set by register_method
    # The settings the objective reads from ``args`` (here: the defaults' three): registration checks the method's
    # config has each, so a missing one fails there, not at a run's first step. An objective that overrides a
    # default states its own (tests/test_methods.py checks every registered one against its code).
    reads: ClassVar[tuple[str, ...]] = ("unlearning_loss", "retaining_rate", "unlearning_rate")
    uses_reference: ClassVar[frozenset[str]] = frozenset()  # "forget" and/or "retain"
    uses_hidden_states: ClassVar[bool] = False

    def __init__(self, args: Any):
        self.args = args
        self.derived: dict[str, Any] = {}  # settings left unset (None) and derived from the model: {field: value}

    def fit_to_model(self, model: nn.Module) -> None:
        """Check the settings that name layers against ``model`` and derive those left unset from its depth (into
        ``derived``); the procedure's setup calls it, so a layer the model lacks is refused before training."""

    def target_modules(self, model: nn.Module) -> list[str]:
        """Which weights train (``target_modules`` syntax)."""
        return self.args.target_modules

    def forget_loss(self, outputs: LMOutputs, batch: dict[str, torch.Tensor], reference: LMOutputs | None) -> torch.Tensor:
        return get_loss(self.args.unlearning_loss)(outputs.logits, batch["labels"])

    def retain_loss(self, outputs: LMOutputs, batch: dict[str, torch.Tensor], reference: LMOutputs | None) -> torch.Tensor:
        return cross_entropy(outputs.logits, batch["labels"])

    def loss_weights(self, step: int, max_steps: int) -> tuple[float, float]:
        """(retain weight, forget weight) at ``step``; Circuit Breakers schedules them."""
        return self.args.retaining_rate, self.args.unlearning_rate
