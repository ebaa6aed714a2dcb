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
    "available_methods": "registry",
    "get_method": "registry",
    "register_method": "registry",
    "UndoConfig": "undo",
    "UndoTrainer": "undo",
    "UnlearnConfig": "unlearn_config",
    "UnlearnTrainer": "unlearn_trainer",
}
__all__ = sorted(_EXPORTS)  # and the registered methods' configs (``__dir__``)


def _method_configs() -> dict[str, type]:
    """Every registered method's config class by name (``MUDMANConfig``, ...): exported without being listed."""
    registry = importlib.import_module(".registry", __name__)
    return {registry.get_method(method).config.__name__: registry.get_method(method).config for method in registry.available_methods()}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    if name.endswith("Config") and not name.startswith("_") and name in (configs := _method_configs()):
        return configs[name]
    raise AttributeError(f"module 'hf_unlearn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_method_configs()))


if TYPE_CHECKING:
    from .attacks import AttackSuite, AttackSuiteResult, RelearnAttackConfig, RelearnAttackTrainer  # noqa: F401
    from .callbacks import DisruptionBudgetCallback  # noqa: F401
    from .losses import available_losses, get_loss, register_loss  # noqa: F401

    # For type checkers only; at run time every registered method's config is exported (``_method_configs``).
    from .methods.cir import CIRConfig  # noqa: F401
    from .methods.circuit_breakers import CircuitBreakersConfig  # noqa: F401
    from .methods.graddiff import GradDiffConfig  # noqa: F401
    from .methods.mudman import MUDMANConfig  # noqa: F401
    from .methods.npo import NPOConfig  # noqa: F401
    from .methods.rmu import RMUConfig  # noqa: F401
    from .methods.simnpo import SimNPOConfig  # noqa: F401
    from .methods.tar import TARConfig  # noqa: F401
    from .models import default_model_path  # noqa: F401
    from .objective import Objective  # noqa: F401
    from .registry import available_methods, get_method, register_method  # noqa: F401
    from .undo import UndoConfig, UndoTrainer  # noqa: F401
    from .unlearn_config import UnlearnConfig  # noqa: F401
    from .unlearn_trainer import UnlearnTrainer  # noqa: F401
