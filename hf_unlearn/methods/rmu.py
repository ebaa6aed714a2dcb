"""RMU: Representation Misdirection for Unlearning (Li et al. 2024, "The WMDP Benchmark", arXiv 2403.03218).

On forget tokens, the output of decoder layer ``rmu_layer`` (default: 7/30 of the depth) is steered
towards ``steering_coef * u`` (u a fixed random unit vector, seeded); on retain tokens it is held at
the frozen model's output (mean squared error, weighted by ``retaining_rate``, RMU's alpha). Only
the MLP output matrices of layers ``rmu_layer - 2 .. rmu_layer`` train by default, so the frozen
activations come from the current model with those three tensors at their original values: no
second model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..components import OptimizerArguments, OptimizerUpdate, RateArguments, TransformArguments
from ..forward import LMOutputs
from ..losses import activation_mse, steering_loss
from ..objective import Objective
from ..registry import Citation, around, register_method
from ..targets import check_layers, depth_fraction, layer_modules, model_depth
from ..unlearn_config import UnlearnConfig


@dataclass
class RMUConfig(RateArguments, TransformArguments, OptimizerArguments, UnlearnConfig):
    method: str = field(default="rmu", metadata={"help": "Unlearning method (registry name)."})
    rmu_layer: int | None = field(
        default=None,
        metadata={
            "help": "Decoder layer whose output is steered (0-based); "
            "default: 7/30 of the depth, rounded (7 on SmolLM2-135M)."
        },
    )
    steering_coef: float = field(default=6.5, metadata={"help": "Norm c of the steering target c*u."})
    retaining_rate: float = field(default=1200.0, metadata={"help": "RMU's alpha: weight of the retain activation MSE."})
    target_modules: list[str] = field(
        default_factory=list,
        metadata={"help": "Trained layers; empty: the MLP output matrices of layers rmu_layer-2 .. rmu_layer."},
    )
    learning_rate: float = field(default=5e-5, metadata={"help": "The optimizer's learning rate (RMU paper)."})

    def __post_init__(self):
        if (self.rmu_layer is not None and self.rmu_layer < 0) or self.steering_coef <= 0:
            raise ValueError(f"rmu_layer={self.rmu_layer} / steering_coef={self.steering_coef}: use a layer >= 0 and a coefficient > 0")
        super().__post_init__()


def default_rmu_layer(depth: int) -> int:
    """``rmu_layer`` for a model of ``depth`` decoder layers: 7/30 of it, as the authors' 7 of Zephyr-7B's 32 and
    7 of SmolLM2-135M's 30 (an early-middle layer)."""
    return depth_fraction(depth, 7, 30)


def control_vector(width: int, steering_coef: float, seed: int) -> torch.Tensor:
    """``steering_coef * u``, u uniform in [0, 1)^width normalised to unit length, from ``seed``."""
    direction = torch.rand(width, generator=torch.Generator().manual_seed(seed))
    return steering_coef * direction / direction.norm()


@register_method(
    "rmu", config=RMUConfig, procedure=OptimizerUpdate,
    citation=Citation("li2024wmdp", "The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning", "Nathaniel Li and others", "2403.03218"),
    search_space={"learning_rate": around(5e-5), "steering_coef": around(6.5), "retaining_rate": around(1200.0)},
    search_space_source=(
        "RMU (Li et al. 2024, WMDP, arXiv 2403.03218) on Zephyr-7B: learning rate 5e-5, steering coefficient 6.5, alpha 1200"
    ),
)
class RMU(Objective):
    reads = ("steering_coef", "seed", "retaining_rate", "unlearning_rate")
    uses_reference = frozenset({"retain"})
    uses_hidden_states = True
    layer: int  # rmu_layer, resolved against the model by fit_to_model

    def fit_to_model(self, model: nn.Module) -> None:
        depth = model_depth(model)
        if self.args.rmu_layer is None:
            self.derived["rmu_layer"] = default_rmu_layer(depth)
        else:
            check_layers("rmu_layer", self.args.rmu_layer, 0, depth - 1, depth)
        self.layer = self.derived.get("rmu_layer", self.args.rmu_layer)

    def target_modules(self, model: nn.Module) -> list[str]:
        return self.args.target_modules or layer_modules(model, "last_mlp", range(max(0, self.layer - 2), self.layer + 1))

    def _activations(self, outputs: LMOutputs) -> torch.Tensor:
        return outputs.hidden_states[self.layer + 1]  # [0] is the embeddings

    def forget_loss(self, outputs: LMOutputs, batch: dict[str, torch.Tensor], reference: LMOutputs | None) -> torch.Tensor:
        hidden = self._activations(outputs)
        control = control_vector(hidden.shape[-1], self.args.steering_coef, self.args.seed).to(hidden.device)
        return steering_loss(hidden, control, batch["attention_mask"])

    def retain_loss(self, outputs: LMOutputs, batch: dict[str, torch.Tensor], reference: LMOutputs | None) -> torch.Tensor:
        return activation_mse(self._activations(outputs), self._activations(reference), batch["attention_mask"])
