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
    "DisruptionBudgetCallback": "callbacks",
    "RelearnAttackConfig": "config",
    "UnlearnConfig": "config",
    "default_model_path": "embedded_model",
    "available_losses": "losses",
    "get_loss": "losses",
    "register_loss": "losses",
    "CIRConfig": "methods",
    "CircuitBreakersConfig": "methods",
    "GradDiffConfig": "methods",
    "MUDMANConfig": "methods",
    "NPOConfig": "methods",
    "RMUConfig": "methods",
    "SimNPOConfig": "methods",
    "TARConfig": "methods",
    "Objective": "objective",
    "available_methods": "registry",
    "get_method": "registry",
    "register_method": "registry",
    "RelearnAttackTrainer": "relearn",
    "UnlearnTrainer": "trainer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hf_unlearn' has no attribute {name!r}")
    if _EXPORTS[name] == "registry":
        importlib.import_module(".methods", __name__)  # importing the methods registers them
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from .attacks import AttackSuite, AttackSuiteResult  # noqa: F401
    from .callbacks import DisruptionBudgetCallback  # noqa: F401
    from .config import RelearnAttackConfig, UnlearnConfig  # noqa: F401
    from .embedded_model import default_model_path  # noqa: F401
    from .losses import available_losses, get_loss, register_loss  # noqa: F401
    from .methods import (
        CIRConfig,  # noqa: F401
        CircuitBreakersConfig,  # noqa: F401
        GradDiffConfig,  # noqa: F401
        MUDMANConfig,  # noqa: F401
        NPOConfig,  # noqa: F401
        RMUConfig,  # noqa: F401
        SimNPOConfig,  # noqa: F401
        TARConfig,  # noqa: F401
    )
    from .objective import Objective  # noqa: F401
    from .registry import available_methods, get_method, register_method  # noqa: F401
    from .relearn import RelearnAttackTrainer  # noqa: F401
    from .trainer import UnlearnTrainer  # noqa: F401
