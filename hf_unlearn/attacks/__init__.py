"""Attacks on an unlearned model and the attacker's best over a suite of them.

- ``suite``: ``AttackSuite`` (many attacks, each on a fresh copy of the model) and its result.
- ``presets``: the named suites (``quick``, ``standard``, ``paper``).
- ``quantize``: the model as deployed at 8 or 4 bits, no training.
- ``inputs``: what an attacker puts before the evaluated text, no training: facts of the attack
  split (in-context relearning) or a prompt template.
"""

from .presets import ADAMW_CLIPPED, LORA_ADAMW, PRESETS, SGD
from .suite import RESULT_FILE, AttackSuite, AttackSuiteResult, run_fingerprint

__all__ = ["ADAMW_CLIPPED", "LORA_ADAMW", "PRESETS", "RESULT_FILE", "SGD", "AttackSuite", "AttackSuiteResult", "run_fingerprint"]
