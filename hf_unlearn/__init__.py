"""hf_unlearn: robust unlearning for Hugging Face causal LMs, as Trainer extensions."""

from .attacks import AttackSuite, AttackSuiteResult
from .callbacks import DisruptionBudgetCallback
from .config import RelearnAttackConfig, UnlearnConfig
from .losses import available_losses, get_loss, register_loss
from .methods import (
    CIRConfig,
    CircuitBreakersConfig,
    GradDiffConfig,
    NPOConfig,
    RMUConfig,
    SimNPOConfig,
    TARConfig,
    UnlearningMethod,
    available_methods,
    get_method_class,
    register_method,
)
from .models import default_model_path
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
    "NPOConfig",
    "RMUConfig",
    "SimNPOConfig",
    "TARConfig",
    "RelearnAttackConfig",
    "RelearnAttackTrainer",
    "UnlearnConfig",
    "UnlearnTrainer",
    "UnlearningMethod",
    "available_losses",
    "available_methods",
    "default_model_path",
    "get_loss",
    "get_method_class",
    "register_loss",
    "register_method",
]
