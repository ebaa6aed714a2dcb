"""hf_unlearn: robust unlearning for Hugging Face causal LMs, as Trainer extensions."""

from .attacks import AttackSuite, AttackSuiteResult
from .callbacks import DisruptionBudgetCallback
from .config import RelearnAttackConfig, UnlearnConfig
from .embedded_model import default_model_path
from .losses import available_losses, get_loss, register_loss
from .methods import (
    CIRConfig,
    CircuitBreakersConfig,
    GradDiffConfig,
    MUDMANConfig,
    NPOConfig,
    RMUConfig,
    SimNPOConfig,
    TARConfig,
)
from .objective import Objective
from .registry import available_methods, get_method, register_method
from .relearn import RelearnAttackTrainer
from .trainer import UnlearnTrainer

__version__ = "0.1.0"

__all__ = [
    "AttackSuite",
    "AttackSuiteResult",
    "CIRConfig",
    "CircuitBreakersConfig",
    "DisruptionBudgetCallback",
    "GradDiffConfig",
    "MUDMANConfig",
    "NPOConfig",
    "Objective",
    "RMUConfig",
    "RelearnAttackConfig",
    "RelearnAttackTrainer",
    "SimNPOConfig",
    "TARConfig",
    "UnlearnConfig",
    "UnlearnTrainer",
    "available_losses",
    "available_methods",
    "default_model_path",
    "get_loss",
    "get_method",
    "register_loss",
    "register_method",
]
