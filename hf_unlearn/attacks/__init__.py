"""Attacks on an unlearned model and the attacker's best over a suite of them.

- ``attack``: ``Attack``, what one kind of attack does, and ``ATTACK_KINDS``, every kind by name.
- One file per kind: ``fine_tune`` (``RelearnAttackTrainer`` in ``relearn_trainer``), ``quantize`` (the model as
  deployed at 8 or 4 bits), ``in_context`` (facts of the attack split before the evaluated text), ``prompt`` (a
  prompt template before it); ``inputs`` holds what the last two put there. The kinds but fine-tuning train nothing.
- ``relearn_config``: ``RelearnAttackConfig``, one attack: its kind and settings.
- ``suite``: ``AttackSuite`` (many attacks, each on a fresh copy of the model) and its result.
- ``presets``: the named suites (``quick``, ``standard``, ``paper``).
"""

# Each kind's file registers it in ATTACK_KINDS when imported: every kind of the package, here.
from . import fine_tune, in_context, prompt, quantize  # noqa: F401
from .attack import ATTACK_KINDS, Attack, AttackRun, register_attack
from .presets import ADAMW_CLIPPED, LORA_ADAMW, PRESETS, SGD
from .relearn_config import RelearnAttackConfig
from .relearn_trainer import RelearnAttackTrainer
from .suite import RESULT_FILE, AttackSuite, AttackSuiteResult, run_fingerprint

__all__ = [
    "ADAMW_CLIPPED", "ATTACK_KINDS", "LORA_ADAMW", "PRESETS", "RESULT_FILE", "SGD", "Attack", "AttackRun", "AttackSuite",
    "AttackSuiteResult", "RelearnAttackConfig", "RelearnAttackTrainer", "register_attack", "run_fingerprint",
]  # fmt: skip
