"""hf_unlearn: robust unlearning for Hugging Face causal LMs, as Trainer extensions.

The public names are imported on first use (PEP 562), so that ``import hf_unlearn`` and the
``hf-unlearn`` command's ``--help`` and ``--version`` do not wait for torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "AttackSuite": "attacks",
    "AttackSuiteResult": "attacks",
    "RelearnAttackConfig": "attacks",
    "RelearnAttackTrainer": "attacks",
    "DisruptionBudgetCallback": "callbacks",
    "default_model_path": "models",
    "available_losses": "losses",
    "get_loss": "losses",
    "register_loss": "losses",
    "Objective": "objective",
    "available_methods": "methods",  # through the methods package: the built-in methods registered first
    "get_method": "methods",
    "CIRConfig": "methods",
    "CircuitBreakersConfig": "methods",
    "GradDiffConfig": "methods",
    "MUDMANConfig": "methods",
    "NPOConfig": "methods",
    "RMUConfig": "methods",
    "SimNPOConfig": "methods",
    "TARConfig": "methods",
    "register_method": "registry",
    "UndoConfig": "undo",
    "UndoTrainer": "undo",
    "UnlearnConfig": "unlearn_config",
    "UnlearnTrainer": "unlearn_trainer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'hf_unlearn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from .attacks import AttackSuite, AttackSuiteResult, RelearnAttackConfig, RelearnAttackTrainer  # noqa: F401
    from .callbacks import DisruptionBudgetCallback  # noqa: F401
    from .losses import available_losses, get_loss, register_loss  # noqa: F401
    from .methods import (  # noqa: F401
        CIRConfig,
        CircuitBreakersConfig,
        GradDiffConfig,
        MUDMANConfig,
        NPOConfig,
        RMUConfig,
        SimNPOConfig,
        TARConfig,
        available_methods,
        get_method,
    )
    from .models import default_model_path  # noqa: F401
    from .objective import Objective  # noqa: F401
    from .registry import register_method  # noqa: F401
    from .undo import UndoConfig, UndoTrainer  # noqa: F401
    from .unlearn_config import UnlearnConfig  # noqa: F401
    from .unlearn_trainer import UnlearnTrainer  # noqa: F401
