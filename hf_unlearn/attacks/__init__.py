"""Attacks on an unlearned model and the attacker's best over a suite of them.

- ``relearn_config``: ``RelearnAttackConfig``, one attack: its kind (fine-tuning, quantization,
  in-context facts, prompt templates) and settings.
- ``relearn_trainer``: ``RelearnAttackTrainer``, which runs one attack and marks diverged points.
- ``suite``: ``AttackSuite`` (many attacks, each on a fresh copy of the model) and its result.
- ``presets``: the named suites (``quick``, ``standard``, ``paper``).
- ``quantize``: the model as deployed at 8 or 4 bits, no training.
- ``inputs``: what an attacker puts before the evaluated text, no training: facts of the attack
  split (in-context relearning) or a prompt template.
"""

from .presets import ADAMW_CLIPPED, LORA_ADAMW, PRESETS, SGD
from .relearn_config import ATTACK_KINDS, RelearnAttackConfig
from .relearn_trainer import RelearnAttackTrainer
from .suite import RESULT_FILE, AttackSuite, AttackSuiteResult, run_fingerprint

__all__ = [
    "ADAMW_CLIPPED", "ATTACK_KINDS", "LORA_ADAMW", "PRESETS", "RESULT_FILE", "SGD", "AttackSuite", "AttackSuiteResult",
    "RelearnAttackConfig", "RelearnAttackTrainer", "run_fingerprint",
]  # fmt: skip
