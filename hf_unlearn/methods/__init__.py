"""Unlearning methods, one file each: a config, an objective, registered with an update procedure.

Every module of this package registers its method on import, so a new method is one new file.
"""

import importlib
import pkgutil

from .cir import CIR, CIRConfig, CIRUpdate
from .circuit_breakers import CircuitBreakers, CircuitBreakersConfig
from .graddiff import GradDiff, GradDiffConfig
from .mudman import MUDMAN, MUDMANConfig
from .npo import NPO, NPOConfig
from .rmu import RMU, RMUConfig
from .simnpo import SimNPO, SimNPOConfig
from .tar import TAR, TARConfig

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "CIR",
    "CIRConfig",
    "CIRUpdate",
    "MUDMAN",
    "MUDMANConfig",
    "NPO",
    "RMU",
    "TAR",
    "CircuitBreakers",
    "CircuitBreakersConfig",
    "GradDiff",
    "GradDiffConfig",
    "NPOConfig",
    "RMUConfig",
    "SimNPO",
    "SimNPOConfig",
    "TARConfig",
]
