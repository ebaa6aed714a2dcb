"""MUDMAN: Meta-Unlearning with Disruption Masking And Normalization.

Sondej, Yang, Kniejski, Windys (2025), "Robust LLM Unlearning with MUDMAN: Meta-Unlearning with
Disruption Masking And Normalization", arXiv 2506.12484. The objective is the plain one
(``unlearning_loss`` on the forget batch, cross-entropy on the retain batch); the method is the
procedure, ``MetaUnlearningLoop``, whose docstring explains the loop step by step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..components import ComponentArguments, MetaUnlearningLoop
from ..objective import Objective
from ..registry import Citation, around, register_method
from ..unlearn_config import FullUpdateArguments, UnlearnConfig


@dataclass
class MUDMANConfig(ComponentArguments, FullUpdateArguments, UnlearnConfig):
    """MUDMAN's config: every component on (the paper's defaults), the update applied by plain SGD at learning rate 1."""

    method: str = field(default="mudman", metadata={"help": "Unlearning method (registry name)."})
    unlearning_rate: float = field(
        default=1e-4,
        metadata={
            "help": "Step size of the unlearning update. With normalization on, the update's root-mean-square element "
            "equals this value (SmolLM2-135M gate_proj weights have RMS ~0.19)."
        },
    )
    retaining_rate: float = field(default=1e-3, metadata={"help": "Step size of the retain step, along the retain direction."})
    retain_momentum: float = field(default=0.9, metadata={"help": "EMA factor beta of the retain gradient (the retain direction)."})
    meta_learning: bool = field(default=True, metadata={"help": "Take the unlearning gradient at a relearning adversary."})
    disruption_masking: bool = field(default=True, metadata={"help": "Mask the unlearning gradient by sign agreement."})
    normalize_unlearning_grad: bool = field(default=True, metadata={"help": "Normalize the unlearning gradient to norm sqrt(N)."})


@register_method(
    "mudman", config=MUDMANConfig, procedure=MetaUnlearningLoop,
    citation=Citation(
        "sondej2025mudman", "Robust LLM Unlearning with MUDMAN: Meta-Unlearning with Disruption Masking And Normalization",
        "Filip Sondej and Yushi Yang and Miko{\\l}aj Kniejski and Marcel Windys", "2506.12484",
    ),
    search_space={"unlearning_rate": around(2e-5), "adv_lr": around(1e-3), "retaining_rate": around(1e-3)},
    search_space_source=(
        "filyp/MUDMAN src/MUDMAN.py defaults (arXiv 2506.12484): adv_lr 1e-3, retaining_rate 1e-3, fork_every_n_loops 32, "
        "retain_momentum 0.9; its unlearning step of global norm 0.1 is an RMS of 2e-5 per element on SmolLM2's gate_proj (2.65e7 weights)"
    ),
    step_size_setting="unlearning_rate",
)
class MUDMAN(Objective):
    """``unlearning_loss`` on forget batches, cross-entropy on retain batches (the ``Objective`` defaults)."""
