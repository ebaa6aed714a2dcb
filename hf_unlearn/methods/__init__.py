"""Unlearning methods, one file each, found by name through the registry."""

import importlib
import pkgutil

from .base import UnlearningMethod, available_methods, get_method_class, register_method
from .cir import CIR, CIRConfig
from .circuit_breakers import CircuitBreakers, CircuitBreakersConfig
from .graddiff import GradDiff, GradDiffConfig, GradientMethodConfig
from .mudman import MUDMAN
from .npo import NPO, NPOConfig
from .rmu import RMU, RMUConfig
from .simnpo import SimNPO, SimNPOConfig
from .tar import TAR, TARConfig

# Every module of this package registers its method on import, so a new method is one new file.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "CIR",
    "CIRConfig",
    "MUDMAN",
    "NPO",
    "RMU",
    "TAR",
    "CircuitBreakers",
    "CircuitBreakersConfig",
    "GradDiff",
    "GradDiffConfig",
    "GradientMethodConfig",
    "NPOConfig",
    "RMUConfig",
    "SimNPO",
    "SimNPOConfig",
    "TARConfig",
    "UnlearningMethod",
    "available_methods",
    "get_method_class",
    "register_method",
]
