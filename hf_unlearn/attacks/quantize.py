"""The quantization attack: the model as users deploy it at 8 or 4 bits, evaluated without any training.

Zhang et al. (ICLR 2025, arXiv 2410.16454) found that 4-bit quantization brings back much of what
gradient-ascent-style unlearning removed: the unlearning update is smaller than a quantization step,
so the unlearned and the original weight round to the same value. The schemes are torchao's, which
transformers loads through ``TorchAoConfig`` and which run on CPU as well as GPU:

- ``int8``: ``Int8WeightOnlyConfig()``: symmetric, one scale per output row (absmax / 127.5).
- ``int4``: ``IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(32),
  mapping_type=ASYMMETRIC)``: a scale and a zero point per group of 32 inputs.

Why torchao, of the libraries transformers integrates (tried on a 2-core x86 CPU, transformers 5.24):
it is PyTorch's own, both schemes load through ``quantization_config`` on CPU, and they are plain
round-to-nearest, which can be mirrored exactly. bitsandbytes loads on CPU but its 8-bit layers also
quantize activations and its CPU 4-bit repacking corrupts dequantized weights after a forward pass;
optimum-quanto compiles a C++ extension at its first 4-bit use; HQQ does not load through
transformers 5.24 (its quantizer lacks ``get_quantize_ops``).

torchao's weight-only layers compute ``F.linear(x, dequantized weight)``, so a model whose linear
weights are replaced by their quantize-dequantize (``quantize_dequantize``) computes what the
deployed model computes: ``tests/test_no_training_attacks.py`` checks every weight bit for bit, and
the logits, against torchao's own output (live where torchao is installed, else as recorded by
``tests/quantize_reference.py``). The attack therefore needs no quantization library (torchao is not a
dependency: once installed, transformers imports it at start-up, noisily), and the model it returns
evaluates like any other. As ``TorchAoConfig`` does, the output head and the embeddings stay as they are.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import Any

import torch
from datasets import Dataset
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..evaluation.evaluators import Evaluator
from .attack import AttackRun, Variant, evaluate_variants, register_attack
from .relearn_config import RelearnAttackConfig

SCHEMES = {8: None, 4: 32}  # bits -> default group size (None: one group per output row)


def quantize_dequantize(weight: torch.Tensor, bits: int, group_size: int | None = None) -> torch.Tensor:
    """``weight`` (out, in) rounded to ``bits``-bit integers and back, in its own dtype, as torchao does it.

    8 bits: symmetric, no zero point; 4 bits: asymmetric, zero point in [-8, 7], range widened to
    include 0. Scales per row (``group_size=None``) or per ``group_size`` consecutive inputs.
    Rounding is half to even (``torch.round``), as torchao's."""
    if bits not in SCHEMES:
        raise ValueError(f"bits={bits}: the quantization attack supports {sorted(SCHEMES)} bits")
    group_size = group_size or weight.shape[-1]
    if weight.shape[-1] % group_size:
        raise ValueError(f"group_size={group_size} does not divide the input dimension {weight.shape[-1]}")
    q_min, q_max = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    groups = weight.reshape(-1, group_size)
    low = groups.amin(dim=1, keepdim=True).clamp(max=0)
    high = groups.amax(dim=1, keepdim=True).clamp(min=0)
    if bits == 8:
        scale = torch.clamp(torch.maximum(-low, high) / ((q_max - q_min) / 2), min=torch.finfo(torch.float32).eps).float()
        zero_point = torch.zeros_like(scale)
    else:
        scale = torch.clamp((high - low) / (q_max - q_min), min=torch.finfo(weight.dtype).smallest_normal)
        zero_point = torch.clamp(q_min - torch.round(low / scale), q_min, q_max)
    quantized = torch.clamp(torch.round(groups * (1.0 / scale)) + zero_point, q_min, q_max)
    return ((quantized.to(weight.dtype) - zero_point.to(weight.dtype)) * scale).to(weight.dtype).reshape(weight.shape)


def quantized_layers(model: nn.Module) -> list[nn.Linear]:
    """The layers the attack quantizes: every ``nn.Linear`` but the output head (as ``TorchAoConfig`` does)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    layers = [module for module in model.modules() if isinstance(module, nn.Linear) and module is not head]
    if not layers:  # GPT-2's Conv1D layers, for one: torchao's weight-only schemes leave them as they are too
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer besides its output head: the quantize attack has nothing to quantize")
    return layers


def check_group_size(model: nn.Module, group_size: int | None) -> None:
    """Before any attack runs: ``group_size`` (``quantize_group_size``) divides every quantized layer's input width,
    and the model has layers to quantize (otherwise the attack would fail after the suite's first evaluations)."""
    widths = sorted({layer.in_features for layer in quantized_layers(model)})
    if group_size is not None and any(width % group_size for width in widths):
        raise ValueError(
            f"quantize_group_size={group_size} does not divide the input width of the model's linear layers ({', '.join(map(str, widths))}): "
            f"give a divisor of {math.gcd(*widths)}, or leave it unset (int4: groups of 32)"
        )


def quantized_copy(model: nn.Module, bits: int, group_size: int | None = None) -> nn.Module:
    """A copy of ``model`` whose linear weights (not the output head) are quantized to ``bits`` and dequantized;
    ``model`` itself is left as it is."""
    quantized = copy.deepcopy(model)
    with torch.no_grad():
        for module in quantized_layers(quantized):
            module.weight.copy_(quantize_dequantize(module.weight, bits, group_size if group_size is not None else SCHEMES[bits]))
    return quantized


@register_attack
class Quantize:
    """The model as deployed at ``quantize_bits`` (``kind="quantize"``): one variant, no training."""

    name = "quantize"
    trains = False
    settings = ("quantize_bits", "quantize_group_size")

    def check(self, model: nn.Module, config: RelearnAttackConfig) -> None:
        check_group_size(model, config.quantize_group_size)

    def describe(self, config: RelearnAttackConfig) -> str:
        group = config.quantize_group_size or SCHEMES[config.quantize_bits]
        return f"int{config.quantize_bits} weights, " + (f"groups of {group}" if group else "one scale per row") + ", no training"

    def run(
        self, model: nn.Module, config: RelearnAttackConfig, *, attack_dataset: Dataset, eval_dataset: dict[str, Dataset],
        evaluators: dict[str, Evaluator], processing_class: PreTrainedTokenizerBase, retain_dataset: Dataset | None,
        start: dict[str, Any] | None, wandb: Any,
    ) -> AttackRun:  # fmt: skip
        return evaluate_variants(self.variants(model, config, eval_dataset, evaluators), model, config, eval_dataset, evaluators, processing_class, start, wandb)

    def variants(self, model: nn.Module, config: RelearnAttackConfig, eval_dataset: dict[str, Dataset], evaluators: dict[str, Evaluator]) -> Iterator[Variant]:
        # Made when asked for: after the unattacked model is evaluated, one extra copy of the model at a time.
        yield f"int{config.quantize_bits}", quantized_copy(model, config.quantize_bits, config.quantize_group_size), eval_dataset, evaluators
