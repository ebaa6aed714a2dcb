"""Unlearning methods, one file each: a config, an objective, and one registration carrying them with the
update procedure, the citation and the search space (``hf_unlearn.registry.register_method``).

Importing this package registers the built-in methods, listed here: a new built-in method is one file and
its line below (a method of your own registers from your code, on import). Look a method up through this
package (``hf_unlearn.methods.get_method``, ``hf_unlearn.get_method``), which guarantees they are registered.
"""

from ..registry import available_methods, get_method
from .cir import CIRConfig
from .circuit_breakers import CircuitBreakersConfig
from .graddiff import GradDiffConfig
from .mudman import MUDMANConfig
from .npo import NPOConfig
from .rmu import RMUConfig
from .simnpo import SimNPOConfig
from .tar import TARConfig

__all__ = [
    "CIRConfig", "CircuitBreakersConfig", "GradDiffConfig", "MUDMANConfig", "NPOConfig", "RMUConfig", "SimNPOConfig", "TARConfig",
    "available_methods", "get_method",
]  # fmt: skip
