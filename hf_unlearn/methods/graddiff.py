"""GradDiff: gradient ascent on the forget set, gradient descent on the retain set.

Liu et al. (2022), "Continual Learning and Private Unlearning"; the standard baseline of TOFU,
MUSE and WMDP evaluations. Loss = forget_weight * (-CE(forget)) + retain_weight * CE(retain),
minimised by any optimizer (AdamW by default). With ``unlearning_loss`` other registry losses
replace -CE, and every component can be switched on: ``GradDiffConfig(disruption_masking=True)``
is GradDiff with Disruption Masking.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..components import ComponentArguments, OptimizerArguments, OptimizerUpdate
from ..objective import Objective
from ..registry import Citation, around, register_method
from ..unlearn_config import UnlearnConfig


@dataclass
class GradDiffConfig(ComponentArguments, OptimizerArguments, UnlearnConfig):
    method: str = field(default="graddiff", metadata={"help": "Unlearning method (registry name)."})


@register_method(
    "graddiff", config=GradDiffConfig, procedure=OptimizerUpdate,
    citation=Citation("liu2022continual", "Continual Learning and Private Unlearning", "Bo Liu and Qiang Liu and Peter Stone", "2203.12817"),
    search_space={"learning_rate": around(1e-5), "retaining_rate": around(1.0)},
    search_space_source=(
        "TOFU (Maini et al. 2024, arXiv 2401.06121): AdamW, learning rate 1e-5, forget and retain terms weighted equally"
    ),
)
class GradDiff(Objective):
    """``unlearning_loss`` (``neg_cross_entropy``) on forget batches, cross-entropy on retain batches."""
