"""SimNPO: reference-free, length-normalised NPO (Fan et al. 2024, arXiv 2410.07163).

Forget loss -(2/beta) log sigmoid(-(beta/|y|) log pi_theta(y|x) - gamma); plus cross-entropy on
retain. No reference model at all.
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
from ..losses import sequence_logprobs, simnpo_loss
from ..objective import Objective
from ..registry import Citation, around, register_method
from ..unlearn_config import UnlearnConfig


@dataclass
class SimNPOConfig(RateArguments, RepresentationAnchorArguments, TransformArguments, OptimizerArguments, UnlearnConfig):
    method: str = field(default="simnpo", metadata={"help": "Unlearning method (registry name)."})
    simnpo_beta: float = field(default=2.5, metadata={"help": "SimNPO's inverse temperature beta."})
    simnpo_gamma: float = field(default=0.0, metadata={"help": "SimNPO's reward margin gamma."})

    def __post_init__(self):
        if self.simnpo_beta <= 0:
            raise ValueError(f"simnpo_beta={self.simnpo_beta!r} is invalid: it must be > 0")
        super().__post_init__()


@register_method(
    "simnpo", config=SimNPOConfig, procedure=OptimizerUpdate,
    citation=Citation(
        "fan2024simnpo", "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM Unlearning", "Chongyu Fan and others",
        "2410.07163",
    ),
    search_space={"learning_rate": around(1e-5), "simnpo_beta": around(2.5), "retaining_rate": around(1.0)},
    search_space_source=(
        "SimNPO (Fan et al. 2024, arXiv 2410.07163) on TOFU: learning rate 1e-5, beta 2.5"
    ),
)
class SimNPO(Objective):
    reads = ("simnpo_beta", "simnpo_gamma", "retaining_rate", "unlearning_rate")

    def forget_loss(self, outputs: LMOutputs, batch: dict[str, torch.Tensor], reference: LMOutputs | None) -> torch.Tensor:
        logprobs, lengths = sequence_logprobs(outputs.logits, batch["labels"])
        return simnpo_loss(logprobs, lengths, self.args.simnpo_beta, self.args.simnpo_gamma)
