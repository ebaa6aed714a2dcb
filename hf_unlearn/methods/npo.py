"""NPO: Negative Preference Optimization (Zhang, Lin, Bai, Mei 2024, arXiv 2404.05868).

Forget loss -(2/beta) log sigmoid(-beta log(pi_theta(y|x) / pi_ref(y|x))) on forget sequences,
pi_ref the model before unlearning; plus cross-entropy on retain (NPO+RT). The reference costs no
second model: it is the current model with the original values of the trained tensors only
(or, for a PEFT model, with its adapter disabled).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..components import (
    OptimizerArguments,
    OptimizerUpdate,
    RateArguments,
    RepresentationAnchorArguments,
    TransformArguments,
)
from ..forward import LMOutputs
from ..losses import npo_loss, sequence_logprobs
from ..objective import Objective
from ..registry import Citation, around, register_method
from ..unlearn_config import UnlearnConfig


@dataclass
class NPOConfig(RateArguments, RepresentationAnchorArguments, TransformArguments, OptimizerArguments, UnlearnConfig):
    method: str = field(default="npo", metadata={"help": "Unlearning method (registry name)."})
    npo_beta: float = field(default=0.1, metadata={"help": "NPO's inverse temperature beta."})

    def __post_init__(self):
        if self.npo_beta <= 0:
            raise ValueError(f"npo_beta={self.npo_beta!r} is invalid: it must be > 0")
        super().__post_init__()


@register_method(
    "npo", config=NPOConfig, procedure=OptimizerUpdate,
    citation=Citation(
        "zhang2024npo", "Negative Preference Optimization: From Catastrophic Collapse to Effective Unlearning",
        "Ruiqi Zhang and Licong Lin and Yu Bai and Song Mei", "2404.05868",
    ),
    search_space={"learning_rate": around(1e-5), "npo_beta": around(0.1), "retaining_rate": around(1.0)},
    search_space_source=(
        "NPO (Zhang et al. 2024, arXiv 2404.05868) on TOFU: AdamW, learning rate 1e-5, beta 0.1; retain term weighted 1"
    ),
)
class NPO(Objective):
    reads = ("npo_beta", "retaining_rate", "unlearning_rate")
    uses_reference = frozenset({"forget"})

    def forget_loss(self, outputs: LMOutputs, batch: dict[str, torch.Tensor], reference: LMOutputs | None) -> torch.Tensor:
        logprobs, _ = sequence_logprobs(outputs.logits, batch["labels"])
        reference_logprobs, _ = sequence_logprobs(reference.logits, batch["labels"])
        return npo_loss(logprobs, reference_logprobs, self.args.npo_beta)
