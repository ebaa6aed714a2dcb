"""Circuit Breakers: Representation Rerouting (Zou et al. 2024, arXiv 2406.04313).

On forget tokens, the representations at ``cb_layers`` (default: 1/3 and 2/3 of the depth) are
pushed to be orthogonal to the original model's (relu of their cosine); on retain tokens, every
layer's representations are held at the original model's (L2 distance). The published schedule
shifts weight from rerouting to retaining: at step t of T, forget weight ``cb_alpha * (1 - t/(2T))``
and retain weight ``cb_alpha * t/(2T)``.
Full-rank on ``target_modules`` (the original values of the trained tensors give the reference),
or LoRA: pass ``peft_config`` to ``UnlearnTrainer`` and the reference is the model with its adapter
disabled, as in the paper.

The method starts at a stationary point: with the model equal to its reference, cos = 1 is the
maximum of relu(cos) and the retain distance is 0, so the first gradient is rounding noise (~1e-7
here), which Adam's per-element normalisation turns into a full learning-rate step. The authors'
LoRA (B initialised to zero) starts there too. The trajectory, hence the result, then depends on the
floating-point kernels of the machine and the library versions, not only on the seed: compare Circuit
Breakers runs on one machine and one lock file, or start its adapter away from zero
(``LoraConfig(init_lora_weights=False)``), as ``tests/test_golden.py`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..components import OptimizerArguments, OptimizerUpdate, TransformArguments
from ..forward import LMOutputs
from ..losses import representation_distance, rerouting_loss
from ..objective import Objective
from ..registry import Citation, around, register_method
from ..targets import check_layers, depth_fraction, model_depth
from ..unlearn_config import UnlearnConfig


@dataclass
class CircuitBreakersConfig(TransformArguments, OptimizerArguments, UnlearnConfig):
    method: str = field(default="circuit_breakers", metadata={"help": "Unlearning method (registry name)."})
    cb_layers: list[int] | None = field(
        default=None,
        metadata={
            "help": "Layers rerouted, as indices of the model's hidden_states (0 = embeddings); default: 1/3 and 2/3 of "
            "the depth, rounded ([10, 20] on SmolLM2-135M)."
        },
    )
    cb_alpha: float = field(default=10.0, metadata={"help": "Scale alpha of the coefficient schedule."})
    learning_rate: float = field(default=1e-4, metadata={"help": "The optimizer's learning rate (paper, LoRA)."})


def default_cb_layers(depth: int) -> list[int]:
    """``cb_layers`` for a model of ``depth`` decoder layers: the outputs of the blocks at 1/3 and 2/3 of it ([10, 20]
    of SmolLM2-135M's 30), never the embeddings (0), which trained decoder weights cannot move."""
    return sorted({max(1, depth_fraction(depth, 1, 3)), max(1, depth_fraction(depth, 2, 3))})


@register_method(
    "circuit_breakers", config=CircuitBreakersConfig, procedure=OptimizerUpdate,
    citation=Citation("zou2024circuit", "Improving Alignment and Robustness with Circuit Breakers", "Andy Zou and others", "2406.04313"),
    search_space={"learning_rate": around(1e-4), "cb_alpha": around(10.0)},
    search_space_source=(
        "Circuit Breakers (Zou et al. 2024, arXiv 2406.04313): learning rate 1e-4, alpha 10"
    ),
)
class CircuitBreakers(Objective):
    reads = ("cb_alpha",)
    uses_reference = frozenset({"forget", "retain"})
    uses_hidden_states = True
    layers: list[int]  # cb_layers, resolved against the model by fit_to_model

    def fit_to_model(self, model: nn.Module) -> None:
        depth = model_depth(model)
        if self.args.cb_layers is None:
            self.derived["cb_layers"] = default_cb_layers(depth)
        else:
            check_layers("cb_layers", self.args.cb_layers, 0, depth, depth)  # hidden_states: the embeddings, then each block
        self.layers = self.derived.get("cb_layers", self.args.cb_layers)

    def loss_weights(self, step: int, max_steps: int) -> tuple[float, float]:
        progress = step / (2 * max(max_steps, 1))
        return self.args.cb_alpha * progress, self.args.cb_alpha * (1 - progress)

    def forget_loss(self, outputs: LMOutputs, batch: dict[str, torch.Tensor], reference: LMOutputs | None) -> torch.Tensor:
        mask = batch["attention_mask"]
        losses = [rerouting_loss(outputs.hidden_states[i], reference.hidden_states[i], mask) for i in self.layers]
        return torch.stack(losses).mean()

    def retain_loss(self, outputs: LMOutputs, batch: dict[str, torch.Tensor], reference: LMOutputs | None) -> torch.Tensor:
        mask = batch["attention_mask"]
        distances = [representation_distance(h, h_orig, mask) for h, h_orig in zip(outputs.hidden_states, reference.hidden_states)]
        return torch.stack(distances).mean()
