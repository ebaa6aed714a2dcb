"""MUDMAN: Meta-Unlearning with Disruption Masking And Normalization.

Sondej, Yang, Kniejski, Windys (2025), "Robust LLM Unlearning with MUDMAN: Meta-Unlearning with
Disruption Masking And Normalization", arXiv 2506.12484.

MUDMAN is the shared update of ``base.py`` with every component on and MUDMAN's loop: the retain
step first, then the unlearning gradient of ``unlearning_loss`` taken at an adversary that
relearns the forget set, normalized, masked by sign agreement with the retain-gradient EMA, all
written into ``param.grad`` for plain SGD to apply. ``UnlearnConfig`` holds its defaults.
"""

from __future__ import annotations

from ..config import UnlearnConfig
from .base import UnlearningMethod, register_method


@register_method
class MUDMAN(UnlearningMethod):
    name = "mudman"
    config_class = UnlearnConfig
    builds_update = True
