"""CIR: Collapse of Irrelevant Representations (Sondej & Yang 2025, arXiv 2509.11816).

A linear layer's weight gradient is sum_t g_t x_t^T (x_t the token's input activation, g_t the
loss gradient at its output). Directions that many forget tokens share are general
representations, not the facts to remove; CIR projects them out of both x_t and g_t before
rebuilding the update, so only fact-specific directions change. Per step (one forget batch):

1. Forward the forget batch (fact-stating sentences, or any text), capturing each target layer's
   inputs and outputs, and take the output gradients of the forget loss ("MLP breaking" by
   default, over every real token but a leading BOS; or any registry loss). Statistics and the
   update use the same tokens except each sequence's last (``cir_token_masks``), as CIR's authors.
2. Keep the raw x_t and g_t as this epoch's statistics (on the CPU).
3. From epoch 1 on: collapse x_t and g_t along the module's directions (the mean and the top
   principal components of the previous epoch's raw statistics; ``projection="sequential"``
   subtracts them one after another as the authors do, ``"orthogonal"`` projects onto the exact
   complement of their span), rebuild the weight gradients, normalise them together to global
   norm ``step_norm``; then a retain step: the gradient of the distance of layer
   ``retain_layer``'s representations to the original model's (mean distance / mean original
   norm, the authors' ``cb_retain``) on a retain batch, taken after the unlearning step, times
   ``retaining_rate`` (zero for trained weights above that layer, which do not reach it). The sum
   is the update, applied by plain SGD at learning rate 1. Epoch 0 only collects statistics.
4. At the first step of each epoch the bases are recomputed from the previous epoch's statistics
   (gathered across processes first).

Unlearning runs for up to ``num_train_epochs`` (200, the authors') and stops once the retain loss
exceeds its start by ``disruption_budget`` (+0.1 %, the default here; every method has the field),
keeping the last model within budget (``DisruptionBudgetCallback``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor
from transformers.pytorch_utils import Conv1D

from ..components.procedures import Metrics, StepContext, UpdateProcedure, check_full_update_args
from ..components.transforms import Reference, to_device
from ..distributed import (
    gather_rows,
    mean_into_shard,
    mean_over_processes,
    sum_over_processes,
    token_mean_over_processes,
)
from ..forward import decoder_layers, is_sharded, lm_outputs, module_output, reshard, stop_after_unless_sharded
from ..gradients import (
    at_least_float32,
    global_norm,
    loss_gradients,
    orthonormal_basis,
    principal_directions,
    rebuild_weight_grad,
)
from ..losses import IGNORE_INDEX, available_losses, get_loss, mlp_breaking_loss, relative_representation_distance
from ..objective import Objective
from ..registry import Citation, MethodSpec, around, register_method
from ..targets import check_layers, depth_fraction, layer_index, model_depth, resolve_target_modules
from ..unlearn_config import FullUpdateArguments, UnlearnConfig

MLP_BREAKING = "mlp_breaking"
PROJECTIONS = ("sequential", "orthogonal")


def cir_token_masks(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, cut_off_tokens: int | None, bos_token_id: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """CIR's token positions in a right-padded batch, as (batch, seq) bool masks: (loss, statistics).

    The loss counts every real token from ``cut_off_tokens`` on (None: all but a leading BOS token);
    statistics and the rebuilt update use the same tokens except each sequence's last. (The
    authors slice ``[:, cut_off_tokens:-1]`` of the padded batch, which drops the last real token
    of the longest sequences only; dropping every sequence's own last token keeps the selection
    independent of which sequences share a batch, so N processes select what one process does.)
    """
    real = attention_mask.bool()
    loss = real.clone()
    if cut_off_tokens is None:
        if bos_token_id is not None:
            loss[:, 0] &= input_ids[:, 0] != bos_token_id
    else:
        loss[:, :cut_off_tokens] = False
    last = real & ~torch.cat([real[:, 1:], torch.zeros_like(real[:, :1])], dim=1)
    return loss, loss & ~last


@dataclass
class CIRConfig(FullUpdateArguments, UnlearnConfig):
    """Configuration of CIR (defaults: the paper's Llama-3.1-8B setting, see the module docstring; its layers scaled to
    the model's depth, ``default_cir_layers``)."""

    method: str = field(default="cir", metadata={"help": "Unlearning method (registry name)."})
    cir_loss: str = field(
        default=MLP_BREAKING,
        metadata={"help": f"Forget loss: '{MLP_BREAKING}' or a registry loss ({', '.join(available_losses())})."},
    )
    loss_layers: list[int] | None = field(
        default=None,
        metadata={
            "help": "Decoder layers whose MLP outputs MLP breaking uses (0-based); default: from 1/5 of the depth up to "
            "retain_layer's block, rounded (6 .. 11 on SmolLM2-135M)."
        },
    )
    act_components: int = field(default=23, metadata={"help": "Principal components collapsed from activations (besides the mean)."})
    grad_components: int = field(default=35, metadata={"help": "Principal components collapsed from output gradients (besides the mean)."})
    pca_niter: int = field(default=16, metadata={"help": "Subspace iterations of torch.pca_lowrank."})
    step_norm: float = field(default=0.2, metadata={"help": "Global L2 norm of every unlearning update."})
    retain_layer: int | None = field(
        default=None,
        metadata={
            "help": "hidden_states index held at the original (k: the output of block k-1; >= 1); trained weights above "
            "it get no retain term. Default: 2/5 of the depth, rounded (12 on SmolLM2-135M)."
        },
    )
    retaining_rate: float = field(default=3e-4, metadata={"help": "Step size of the retain step after each update."})
    projection: str = field(
        default="sequential",
        metadata={
            "help": "How directions are collapsed: 'sequential' (subtract the mean's, then each component's projection in "
            "turn, as CIR's authors) or 'orthogonal' (exact projection onto the complement of their span)."
        },
    )
    cut_off_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Leading tokens of each sequence left out of loss and statistics. None: the first token where it is "
            "the tokenizer's BOS (the authors' 1 presumes a BOS; SmolLM2 adds none, so nothing is cut)."
        },
    )
    num_train_epochs: float = field(default=200, metadata={"help": "At most this many epochs; the disruption budget stops CIR."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Forget examples per step (authors: 32)."})
    retain_batch_size: int | None = field(default=12, metadata={"help": "Retain examples per step (authors: 12)."})
    disruption_budget: float | None = field(
        default=0.001, metadata={"help": "The authors' +0.1 % (disruption_unit relative); UnlearnConfig.disruption_budget says what it does."}
    )
    target_modules: list[str] = field(
        default_factory=lambda: ["gate_proj", "up_proj", "down_proj"], metadata={"help": "Trained layers (the MLP's)."}
    )
    eval_strategy: str = field(default="epoch", metadata={"help": "CIR checks its disruption budget every epoch."})
    eval_on_start: bool = field(default=True, metadata={"help": "The budget's starting point."})

    def __post_init__(self):
        if self.cir_loss != MLP_BREAKING and self.cir_loss not in available_losses():
            raise ValueError(f"cir_loss={self.cir_loss!r} is invalid: use '{MLP_BREAKING}' or one of {', '.join(available_losses())}")
        for name in ("act_components", "grad_components", "cut_off_tokens"):
            if (getattr(self, name) or 0) < 0:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid: it must be >= 0")
        if self.projection not in PROJECTIONS:
            raise ValueError(f"projection={self.projection!r} is invalid: use one of {', '.join(PROJECTIONS)}")
        if self.retain_layer is not None and self.retain_layer < 1:
            raise ValueError(f"retain_layer={self.retain_layer!r} is invalid: it must be >= 1 (hidden_states[0] is the embeddings)")
        if self.step_norm <= 0:
            raise ValueError(f"step_norm={self.step_norm!r} is invalid: it must be > 0")
        super().__post_init__()


def default_cir_layers(depth: int) -> tuple[list[int], int]:
    """CIR's (``loss_layers``, ``retain_layer``) for a model of ``depth`` decoder layers: the retain term on the output
    of the block at 2/5 of the depth, MLP breaking from 1/5 of it up to that block (6 .. 11 and 12 of SmolLM2-135M's
    30 layers, the values the authors use on Llama-3.1-8B's 32); at least one loss layer, and retain_layer >= 1."""
    retain_layer = max(1, depth_fraction(depth, 2, 5))
    return list(range(min(depth_fraction(depth, 1, 5), retain_layer - 1), retain_layer)), retain_layer


@contextmanager
def capture_io(modules: dict[str, nn.Module]) -> Iterator[dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Record ``{name: (input, output)}`` of ``modules`` during the forward passes inside the block."""
    captured: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(name: str):
        return lambda module, args, output: captured.__setitem__(name, (args[0], output))

    handles = [module.register_forward_hook(hook(name)) for name, module in modules.items()]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


class CIRUpdate(UpdateProcedure):
    """CIR's collapsed update (module docstring), its statistics and bases kept as checkpoint state."""

    def __init__(self, args: CIRConfig, objective: CIR):
        super().__init__(args, objective)
        self.loops_done = 0
        self.reference: Reference | None = None
        self.epochs_done = 0  # epochs whose statistics became bases
        self.stats_epoch: int | None = None  # the epoch the statistics in hand come from
        self.act_stats: dict[str, list[torch.Tensor]] = {}  # this epoch's raw x_t (CPU, fp32)
        self.grad_stats: dict[str, list[torch.Tensor]] = {}  # this epoch's raw g_t
        self.act_bases: dict[str, torch.Tensor] | None = None  # None during epoch 0
        self.grad_bases: dict[str, torch.Tensor] | None = None
        self.bos_token_id: int | None = None  # set by setup() from the tokenizer

    @classmethod
    def check_args(cls, args: CIRConfig, spec: MethodSpec) -> None:
        super().check_args(args, spec)
        check_full_update_args(args, spec.name)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(), "loops_done": self.loops_done, "original": self.reference.original,
            "epochs_done": self.epochs_done, "stats_epoch": self.stats_epoch, "act_stats": self.act_stats,
            "grad_stats": self.grad_stats, "act_bases": self.act_bases, "grad_bases": self.grad_bases,
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        super().load_state_dict(state, device)
        self.loops_done, self.epochs_done, self.stats_epoch = state["loops_done"], state["epochs_done"], state["stats_epoch"]
        self.act_stats, self.grad_stats = state["act_stats"], state["grad_stats"]  # on the CPU, where they are kept
        self.reference.original = to_device(state["original"], device)
        self.act_bases, self.grad_bases = to_device(state["act_bases"], device), to_device(state["grad_bases"], device)

    # --- one step --------------------------------------------------------------------------------

    def setup(self, model: nn.Module, processing_class: Any = None) -> None:
        super().setup(model, processing_class)
        self.reference = Reference(peft=False)
        self.bos_token_id = getattr(processing_class, "bos_token_id", None)

    def _token_masks(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return cir_token_masks(batch["input_ids"], batch["attention_mask"], self.args.cut_off_tokens, self.bos_token_id)

    def _mlps(self, model: nn.Module) -> dict[str, nn.Module]:
        loss_layers = set(self.objective.loss_layers)
        mlps = {name: m for name, m in model.named_modules() if name.endswith(".mlp") and layer_index(name) in loss_layers}
        if len(mlps) != len(loss_layers):
            raise ValueError(f"loss_layers={self.objective.loss_layers}: found MLPs {sorted(mlps)}; the model names its MLPs otherwise")
        return mlps

    def _forget_objective(
        self, step: StepContext, model: nn.Module, batch: dict[str, torch.Tensor], selected: torch.Tensor
    ) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """The forget loss at the current weights (MLP breaking over the ``selected`` tokens, or a registry
        loss over the labels), the target layers' (inputs, outputs), and how many tokens the loss averages over."""
        targets = {name.removesuffix(".weight"): model.get_submodule(name.removesuffix(".weight")) for name in self.target_names}
        mlps = self._mlps(model) if self.args.cir_loss == MLP_BREAKING else {}
        stop = stop_after_unless_sharded(model, list(mlps.values())[-1]) if mlps else nullcontext()
        if mlps:
            with torch.no_grad(), capture_io(mlps) as original, stop_after_unless_sharded(model, list(mlps.values())[-1]):
                lm_outputs(model, batch, dict(zip(self.target_names, self.reference.original)))
            self.passes += 1
            originals = [original[n][1][selected] for n in mlps]
            # The normaliser is a mean over every process's tokens, as one process would compute it.
            num_tokens = selected.sum()
            mean_norms = token_mean_over_processes([at_least_float32(o).norm(dim=-1).mean() for o in originals], num_tokens, step.accelerator)
        with capture_io({**targets, **mlps}) as captured, stop:
            outputs = lm_outputs(model, batch)
        if mlps:
            loss = mlp_breaking_loss([captured[n][1][selected] for n in mlps], originals, mean_norms)
        else:
            loss = get_loss(self.args.cir_loss)(outputs.logits, batch["labels"])
            num_tokens = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
        return loss, {name: captured[name] for name in targets}, num_tokens

    def compute_loss(self, step: StepContext, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        model = step.accelerator.unwrap_model(model)
        self.reference.initialize([model.get_parameter(n) for n in self.target_names])
        return self._forget_objective(step, model, inputs["forget"], self._token_masks(inputs["forget"])[0])[0]

    def training_step(self, step: StepContext, model: nn.Module, inputs: dict[str, Any]) -> tuple[torch.Tensor, Metrics]:
        args = self.args
        model = step.accelerator.unwrap_model(model)
        base = [model.get_parameter(name) for name in self.target_names]
        self.reference.initialize(base)
        forget, retain = inputs["forget"], inputs["retain"]
        loss_mask, selected = self._token_masks(forget)
        # The first step of an epoch turns the previous epoch's statistics into bases. Doing it here, not
        # at the epoch's end, also covers a run resumed from a checkpoint taken at an epoch's last step.
        epoch = int(step.epoch)  # the current epoch's index during its steps
        if self.act_stats and self.stats_epoch is not None and epoch > self.stats_epoch:
            self.end_epoch(step)
        self.stats_epoch = epoch

        # 1. Forget loss, each target layer's inputs x_t and output gradients g_t on the selected tokens.
        with step.autocast():
            loss, io, loss_tokens = self._forget_objective(step, model, forget, loss_mask)
        sharded_mlp_breaking = is_sharded(model) and self.args.cir_loss == MLP_BREAKING
        if sharded_mlp_breaking:
            # FSDP2 gathers a layer's weights for the backward when the gradient reaches the layer's output; MLP
            # breaking's loss reads MLP outputs inside the layers, so the layers it reaches are gathered here.
            for layer in decoder_layers(model)[: max(self.objective.loss_layers) + 1]:
                if isinstance(layer, FSDPModule):
                    layer.unshard()
        output_grads = torch.autograd.grad(loss, [out for _, out in io.values()])
        if sharded_mlp_breaking:
            reshard(model)
        self.passes += 2
        acts = {name: at_least_float32(x.detach()[selected]) for name, (x, _) in io.items()}
        # Gradients of the mean loss over every process's tokens (the authors' gradients of a batch's mean
        # loss when one process holds it): rows that do not depend on how the batch is split, so neither
        # do the statistics and the bases.
        share = loss_tokens / sum_over_processes(loss_tokens, step.accelerator)
        grads = {name: at_least_float32(g[selected]) * share for name, g in zip(io, output_grads)}

        # 2. Raw statistics for the next epoch's bases.
        for name in io:
            self.act_stats.setdefault(name, []).append(acts[name].cpu())
            self.grad_stats.setdefault(name, []).append(grads[name].cpu())

        (loss_value,) = token_mean_over_processes([loss.detach()], loss_tokens, step.accelerator)
        metrics = {"unlearning_loss": loss_value}
        if self.act_bases is None:  # epoch 0: statistics only, the weights stay as they are
            return loss_value, metrics

        # 3. Collapse, rebuild, normalise to step_norm. Each process rebuilds the whole matrix from its own tokens;
        # the mean over processes (sums over tokens: any scale will do) is, under FSDP2, reduce-scattered into the
        # weight's shards at once, as FSDP does with a layer's gradient: one whole matrix at a time.
        sequential = args.projection == "sequential"
        weight_grads = []
        for name, param in zip(io, base):
            grad = rebuild_weight_grad(acts[name], grads[name], self.act_bases[name], self.grad_bases[name], sequential)
            grad = grad.T if isinstance(model.get_submodule(name), Conv1D) else grad  # Conv1D stores (in, out)
            weight_grads.append(mean_into_shard(grad, param) if isinstance(param, DTensor) else grad)
        if not is_sharded(model):
            weight_grads = mean_over_processes(weight_grads, step.accelerator)
        norm = global_norm(weight_grads)
        update = [g * (args.step_norm / norm) if norm > 0 else torch.zeros_like(g) for g in weight_grads]

        # Retain step, taken after the unlearning step: its gradient at base - update.
        retain_loss, retain_grad = self._retain_gradient(step, model, retain, base, update)
        for p, u, g in zip(base, update, retain_grad):  # applied as it is: SGD at learning rate 1 (check_full_update_args)
            p.grad = (u + args.retaining_rate * at_least_float32(g)).to(p.dtype)
        self.loops_done += 1
        return loss_value, {**metrics, "retain_loss": retain_loss, "unlearning_grad_norm": norm}

    def _retain_gradient(
        self, step: StepContext, model: nn.Module, retain: dict[str, torch.Tensor], base: list[nn.Parameter], update: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The relative distance of ``hidden_states[retain_layer]`` to the original's on ``retain``, and its
        gradient at the weights after the unlearning step, averaged over every process's tokens."""
        block = decoder_layers(model)[self.objective.retain_layer - 1]  # hidden_states[k] is block k-1's output
        mask = retain["attention_mask"]
        with torch.no_grad():
            original = module_output(model, retain, block, dict(zip(self.target_names, self.reference.original)))
            # The denominator is a mean over every process's tokens, as one process would compute it.
            local_norm = (at_least_float32(original).norm(dim=-1) * mask).sum() / mask.sum()
            (mean_norm,) = token_mean_over_processes([local_norm], mask.sum(), step.accelerator)
        if is_sharded(model):  # the weights after the unlearning step written into the shards, the block's output captured
            with capture_io({"block": block}) as captured:
                output = lambda _: captured["block"][1][0] if isinstance(captured["block"][1], tuple) else captured["block"][1]  # noqa: E731
                distance = lambda outputs: relative_representation_distance(output(outputs), original, mask, mean_norm)  # noqa: E731
                after = [at_least_float32(p.detach()) - u for p, u in zip(base, update)]
                (loss,), (grads,) = self.sharded_losses_and_grads(step, model, retain, base, after, [distance], False, mask.sum())
            self.passes += 1  # the original's forward
            return loss, grads
        leaves = [(at_least_float32(p.detach()) - u).to(p.dtype).requires_grad_() for p, u in zip(base, update)]
        with step.autocast():
            current = module_output(model, retain, block, dict(zip(self.target_names, leaves)))
            loss = relative_representation_distance(current, original, mask, mean_norm)
        grads = loss_gradients(loss, leaves)  # zero for trained weights above the block, which do not reach its output
        self.passes += 3
        loss, *grads = token_mean_over_processes([loss.detach(), *grads], mask.sum(), step.accelerator)
        return loss, grads

    # --- epochs ----------------------------------------------------------------------------------

    def _directions(self, data: torch.Tensor, num_components: int) -> torch.Tensor:
        directions = principal_directions(data, num_components, self.args.pca_niter, self.args.seed)
        return directions if self.args.projection == "sequential" else orthonormal_basis(directions)

    def end_epoch(self, step: StepContext) -> None:
        """Recompute every module's bases from this epoch's raw statistics (all processes' tokens)."""
        if not self.act_stats:
            return
        self.act_bases, self.grad_bases = {}, {}
        for name in self.act_stats:
            # Step by step, so the rows come in the order one process would have them: identical bases.
            acts = torch.cat([gather_rows(chunk, step.accelerator) for chunk in self.act_stats[name]])
            grads = torch.cat([gather_rows(chunk, step.accelerator) for chunk in self.grad_stats[name]])
            self.act_bases[name] = self._directions(acts, self.args.act_components).to(step.device)
            self.grad_bases[name] = self._directions(grads, self.args.grad_components).to(step.device)
        self.act_stats, self.grad_stats = {}, {}
        self.epochs_done += 1


@register_method(
    "cir", config=CIRConfig, procedure=CIRUpdate,
    citation=Citation(
        "sondej2025cir", "Collapse of Irrelevant Representations (CIR) Ensures Robust and Non-Disruptive LLM Unlearning",
        "Filip Sondej and Yushi Yang", "2509.11816",
    ),
    search_space={"step_norm": around(0.2), "retaining_rate": around(3e-4)},
    search_space_source=(
        "filyp/unlearning configs/main_comparison_llama_bio.yaml (CIR on Llama-3.1-8B): update norm 0.2 ('previous best'), "
        "retaining rate 3e-4"
    ),
    sweep_fixed={"eval_strategy": "steps"},  # the sweep evaluates every eval_steps (its pruning checks)
    step_size_setting="step_norm",
)
class CIR(Objective):
    """What CIR trains and checks; its losses (MLP breaking, the relative retain distance) act on module
    outputs inside the collapsed update, ``CIRUpdate``."""
    reads = ()  # its losses are CIRUpdate's, configured there
    uses_reference = frozenset({"forget", "retain"})
    loss_layers: list[int] | None  # resolved against the model by fit_to_model (None: a registry loss, which reads none)
    retain_layer: int

    def fit_to_model(self, model: nn.Module) -> None:
        depth = model_depth(model)
        loss_layers, retain_layer = default_cir_layers(depth)
        if self.args.loss_layers is not None:
            check_layers("loss_layers", self.args.loss_layers, 0, depth - 1, depth)
        elif self.args.cir_loss == MLP_BREAKING:
            self.derived["loss_layers"] = loss_layers
        if self.args.retain_layer is not None:
            check_layers("retain_layer", self.args.retain_layer, 1, depth, depth)  # hidden_states[k] is block k-1's output
        else:
            self.derived["retain_layer"] = retain_layer
        self.loss_layers = self.derived.get("loss_layers", self.args.loss_layers)
        self.retain_layer = self.derived.get("retain_layer", self.args.retain_layer)

    def target_modules(self, model: nn.Module) -> list[str]:
        """``target_modules``; with MLP breaking, only in the layers up to the last loss layer: no later
        layer can change the loss, and the forward pass stops there."""
        if self.args.cir_loss != MLP_BREAKING:
            return self.args.target_modules
        names = resolve_target_modules(model, self.args.target_modules)
        last = max(self.loss_layers)
        return [name.removesuffix(".weight") for name in names if (layer_index(name) or 0) <= last]
