"""Which weights a method trains: target module names resolved across architectures.

An entry of ``target_modules`` is one of
- an alias: ``"first_mlp"`` (the first MLP matrix: ``gate_proj`` in Llama-style models,
  ``dense_h_to_4h`` in GPT-NeoX/Pythia, ``c_fc`` in GPT-2, ``fc1`` in OPT/Phi), ``"last_mlp"`` (the
  MLP's output matrix: ``down_proj``, ``dense_4h_to_h``, ``c_proj``, ``fc2``) or ``"all_linear"``
  (every linear layer except the output head);
- a layer name, matched against the last components of each module's dotted name
  (``"gate_proj"``, ``"mlp.up_proj"``);
- a regular expression matched against the full module name (``r"model\\.layers\\.[0-5]\\.mlp\\.gate_proj"``).
Only the ``weight`` of each matched module is trained, never its bias.

Settings that name decoder layers (RMU's ``rmu_layer``, Circuit Breakers' ``cb_layers``, CIR's ``loss_layers``
and ``retain_layer``) default to fractions of the model's depth (``depth_fraction``) and are checked against it
(``check_layers``) when the method is set up on its model, before any training step (``Objective.fit_to_model``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn
from transformers.pytorch_utils import Conv1D

FIRST_MLP_NAMES = ("gate_proj", "dense_h_to_4h", "c_fc", "fc1", "w1")
LAST_MLP_NAMES = ("down_proj", "dense_4h_to_h", "mlp.c_proj", "fc2", "w2")
OUTPUT_HEAD_NAMES = ("lm_head", "embed_out")
ALIASES = ("first_mlp", "last_mlp", "all_linear")
_LAYER_INDEX = re.compile(r"\.(\d+)\.")


def weight_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every linear layer (``nn.Linear`` or GPT-2's ``Conv1D``) by its full module name."""
    return {name: module for name, module in model.named_modules() if isinstance(module, (nn.Linear, Conv1D))}


def _matches(pattern: str, name: str) -> bool:
    if name == pattern or name.endswith("." + pattern):
        return True
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


def _expand_alias(entry: str, layer_names: Sequence[str]) -> list[str]:
    if entry == "all_linear":
        return [n for n in layer_names if n.rsplit(".", 1)[-1] not in OUTPUT_HEAD_NAMES]
    for candidate in FIRST_MLP_NAMES if entry == "first_mlp" else LAST_MLP_NAMES:
        found = [n for n in layer_names if _matches(candidate, n)]
        if found:
            return found
    return []


def layer_index(module_name: str) -> int | None:
    """The decoder-layer index in a module name (``model.layers.7.mlp.down_proj`` -> 7), if any."""
    match = _LAYER_INDEX.search(module_name)
    return int(match.group(1)) if match else None


def layer_modules(model: nn.Module, alias: str, layers: Sequence[int]) -> list[str]:
    """Full names of the ``alias`` modules (``"last_mlp"``, ...) in the given decoder layers."""
    names = [n for n in _expand_alias(alias, list(weight_layers(model))) if layer_index(n) in set(layers)]
    if len(names) != len(set(layers)):
        raise ValueError(f"found {alias} modules {names} for layers {list(layers)}; the model has fewer layers or other names")
    return names


def resolve_target_modules(model: nn.Module, target_modules: Sequence[str]) -> dict[str, nn.Parameter]:
    """Map ``target_modules`` to the weights they name: ``{parameter name: parameter}``, in model order.

    Raises ``ValueError`` when an entry matches nothing, listing the layer names the model has.
    """
    if isinstance(target_modules, str) or not target_modules:
        raise ValueError(
            f"target_modules must be a non-empty list of layer names, got {target_modules!r}; "
            'for example ["gate_proj"] or ["first_mlp"]'
        )
    layers = weight_layers(model)
    selected: set[str] = set()
    for entry in target_modules:
        if entry in ALIASES:
            found = _expand_alias(entry, list(layers))
        else:
            found = [name for name in layers if _matches(entry, name)]
        if not found:
            short_names = sorted({name.rsplit(".", 1)[-1] for name in layers})
            raise ValueError(
                f"target_modules entry {entry!r} matches no linear layer of {type(model).__name__}. "
                f"Layer names found: {', '.join(short_names) or '(none)'}. Use one of these, an alias "
                f"({', '.join(ALIASES)}), or a regular expression over full names such as {next(iter(layers), '')!r}."
            )
        selected.update(found)
    return {f"{name}.weight": layers[name].weight for name in layers if name in selected}


def model_depth(model: nn.Module) -> int:
    """The model's number of decoder layers (``config.num_hidden_layers``; GPT-2's ``n_layer`` answers to it too)."""
    return model.config.num_hidden_layers


def depth_fraction(depth: int, numerator: int, denominator: int) -> int:
    """``numerator / denominator`` of ``depth``, rounded half up; in integers, so no float error moves a half."""
    return (2 * numerator * depth + denominator) // (2 * denominator)


def check_layers(flag: str, value: int | Sequence[int], low: int, high: int, depth: int) -> None:
    """Refuse ``value`` (one layer index or a non-empty list) unless every index lies in ``low .. high``."""
    layers = [value] if isinstance(value, int) else list(value)
    if not layers or not all(low <= layer <= high for layer in layers):
        raise ValueError(
            f"{flag}={value!r} does not fit this model ({depth} decoder layers): use layers {low} to {high}, "
            f"or leave {flag} unset to derive it from the depth"
        )
