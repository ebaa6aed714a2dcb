"""CIR: Collapse of Irrelevant Representations (Sondej & Yang 2025, arXiv 2509.11816).

A linear layer's weight gradient is sum_t g_t x_t^T (x_t the token's input activation, g_t the
loss gradient at its output). Directions that many forget tokens share are general
representations, not the facts to remove; CIR projects them out of both x_t and g_t before
rebuilding the update, so only fact-specific directions change. Per step (one forget batch):

1. Forward the forget batch, capturing each target layer's inputs and outputs on the selected
   tokens (those that predict a target token, minus the first ``cut_off_tokens``), and take the
   output gradients of the forget loss ("MLP breaking" by default, or any registry loss).
2. Keep the raw x_t and g_t as this epoch's statistics (on the CPU).
3. From epoch 1 on: collapse x_t and g_t onto the complement of the module's bases (mean + top
   principal components of the previous epoch's raw statistics), rebuild the weight gradients,
   normalise them together to global norm ``step_norm``; then a retain step: the gradient of the
   relative distance of layer ``retain_layer``'s representations to the original model's on a
   retain batch, taken after the unlearning step, times ``retaining_rate``. The sum is the update,
   applied by plain SGD at learning rate 1. Epoch 0 only collects statistics.
4. At each epoch's end the bases are recomputed (statistics gathered across processes first).

Unlearning stops once the retain loss exceeds its start by ``disruption_budget`` (+0.1 %), keeping
the last model within budget (``DisruptionBudgetCallback``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import TrainerCallback
from transformers.pytorch_utils import Conv1D

from ..callbacks import DisruptionBudgetCallback
from ..config import UnlearnConfig
from ..distributed import gather_rows, mean_over_processes, token_mean_over_processes
from ..gradients import global_norm, principal_basis, rebuild_weight_grad
from ..losses import IGNORE_INDEX, available_losses, get_loss, mlp_breaking_loss, relative_representation_distance
from ..modeling import decoder_layers, lm_outputs, module_output, stop_after
from ..targets import layer_index, resolve_target_modules
from .base import UnlearningMethod, register_method

if TYPE_CHECKING:
    from ..trainer import UnlearnTrainer

MLP_BREAKING = "mlp_breaking"


@dataclass
class CIRConfig(UnlearnConfig):
    """Configuration of CIR (defaults: the paper's Llama-3.1-8B setting, see the module docstring)."""

    method: str = field(default="cir", metadata={"help": "Unlearning method (registry name)."})
    cir_loss: str = field(
        default=MLP_BREAKING,
        metadata={"help": f"Forget loss: '{MLP_BREAKING}' or a registry loss ({', '.join(available_losses())})."},
    )
    loss_layers: list[int] = field(
        default_factory=lambda: list(range(6, 12)), metadata={"help": "Decoder layers whose MLP outputs MLP breaking uses."}
    )
    act_components: int = field(default=23, metadata={"help": "Principal components collapsed from activations (besides the mean)."})
    grad_components: int = field(default=35, metadata={"help": "Principal components collapsed from output gradients (besides the mean)."})
    pca_niter: int = field(default=16, metadata={"help": "Subspace iterations of torch.pca_lowrank."})
    step_norm: float = field(default=0.2, metadata={"help": "Global L2 norm of every unlearning update."})
    retain_layer: int = field(
        default=12, metadata={"help": "hidden_states index held at the original (k: the output of block k-1; >= 1)."}
    )
    retaining_rate: float = field(default=3e-4, metadata={"help": "Step size of the retain step after each update."})
    cut_off_tokens: int = field(default=1, metadata={"help": "Leading tokens of each sequence left out of loss and statistics."})
    disruption_budget: float | None = field(
        default=0.001,
        metadata={"help": "Stop once eval_retain_loss exceeds its start by this fraction (0.001 = +0.1 %); None: never."},
    )
    target_modules: list[str] = field(
        default_factory=lambda: ["gate_proj", "up_proj", "down_proj"], metadata={"help": "Trained layers (the MLP's)."}
    )
    meta_learning: bool = field(default=False, metadata={"help": "Not used by CIR."})
    disruption_masking: bool = field(default=False, metadata={"help": "Not used by CIR."})
    normalize_unlearning_grad: bool = field(default=False, metadata={"help": "CIR normalises with step_norm."})
    eval_strategy: str = field(default="epoch", metadata={"help": "CIR checks its disruption budget every epoch."})
    eval_on_start: bool = field(default=True, metadata={"help": "The budget's starting point."})

    def __post_init__(self):
        if self.cir_loss != MLP_BREAKING and self.cir_loss not in available_losses():
            raise ValueError(f"cir_loss={self.cir_loss!r} is invalid: use '{MLP_BREAKING}' or one of {', '.join(available_losses())}")
        for name in ("act_components", "grad_components", "cut_off_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid: it must be >= 0")
        if self.retain_layer < 1:
            raise ValueError(f"retain_layer={self.retain_layer!r} is invalid: it must be >= 1 (hidden_states[0] is the embeddings)")
        if self.step_norm <= 0:
            raise ValueError(f"step_norm={self.step_norm!r} is invalid: it must be > 0")
        if self.disruption_budget is not None and self.disruption_budget <= 0:
            raise ValueError(f"disruption_budget={self.disruption_budget!r} is invalid: use a positive fraction or None")
        super().__post_init__()
        if self.disruption_budget is not None and self.eval_strategy == "no":
            raise ValueError("eval_strategy='no' is invalid with a disruption_budget: the budget is checked at evaluations")


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


class _EpochEnd(TrainerCallback):
    def __init__(self, method: CIR, trainer: UnlearnTrainer):
        self.method, self.trainer = method, trainer

    def on_epoch_end(self, args, state, control, **kwargs):
        self.method.end_epoch(self.trainer)


@register_method
class CIR(UnlearningMethod):
    name = "cir"
    config_class = CIRConfig
    builds_update = True
    uses_reference = frozenset({"forget", "retain"})
    _STATE = UnlearningMethod._STATE + ("epochs_done", "act_stats", "grad_stats", "act_bases", "grad_bases")

    def __init__(self, args: CIRConfig):
        super().__init__(args)
        self.epochs_done = 0
        self.act_stats: dict[str, list[torch.Tensor]] = {}  # this epoch's raw x_t (CPU, fp32)
        self.grad_stats: dict[str, list[torch.Tensor]] = {}  # this epoch's raw g_t
        self.act_bases: dict[str, torch.Tensor] | None = None  # None during epoch 0
        self.grad_bases: dict[str, torch.Tensor] | None = None

    @classmethod
    def check_args(cls, args: CIRConfig) -> None:
        super().check_args(args)
        for name in ("meta_learning", "disruption_masking", "normalize_unlearning_grad"):
            if getattr(args, name):
                raise ValueError(f"{name}=True is invalid for method 'cir': CIR does not combine with it; set it to False")
        if args.wagle_fraction < 1 or args.retain_representation_weight > 0:
            raise ValueError("wagle_fraction and retain_representation_weight are not used by CIR: leave them at 1 and 0")

    def check_eval_dataset(self, eval_dataset: Any) -> None:
        if self.args.disruption_budget is not None and not (isinstance(eval_dataset, dict) and "retain" in eval_dataset):
            raise ValueError(
                'CIR checks its disruption budget on eval_retain_loss: pass eval_dataset={"retain": ..., ...} '
                "(general text), or set disruption_budget=None"
            )

    def callbacks(self, trainer: UnlearnTrainer) -> list[TrainerCallback]:
        callbacks: list[TrainerCallback] = [_EpochEnd(self, trainer)]
        if self.args.disruption_budget is not None:
            callbacks.append(DisruptionBudgetCallback(self.args.disruption_budget))
        return callbacks

    # --- one step --------------------------------------------------------------------------------

    def _selected(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Positions that predict a target token, minus the first ``cut_off_tokens``: (batch, seq) bool."""
        selected = torch.zeros_like(batch["labels"], dtype=torch.bool)
        selected[:, :-1] = batch["labels"][:, 1:] != IGNORE_INDEX
        selected[:, : self.args.cut_off_tokens] = False
        return selected

    def target_modules(self, model: nn.Module) -> list[str]:
        """``target_modules``; with MLP breaking, only in the layers up to the last loss layer: no later
        layer can change the loss, and the forward pass stops there."""
        if self.args.cir_loss != MLP_BREAKING:
            return self.args.target_modules
        names = resolve_target_modules(model, self.args.target_modules)
        last = max(self.args.loss_layers)
        return [name.removesuffix(".weight") for name in names if (layer_index(name) or 0) <= last]

    def _mlps(self, model: nn.Module) -> dict[str, nn.Module]:
        mlps = {name: m for name, m in model.named_modules() if name.endswith(".mlp") and layer_index(name) in set(self.args.loss_layers)}
        if len(mlps) != len(set(self.args.loss_layers)):
            raise ValueError(f"loss_layers={self.args.loss_layers}: found MLPs {sorted(mlps)}; the model has fewer layers")
        return mlps

    def _forget_objective(self, trainer, model, batch, selected) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """The forget loss at the current weights, the target layers' (inputs, outputs), and how many
        tokens the loss averages over."""
        targets = {name.removesuffix(".weight"): model.get_submodule(name.removesuffix(".weight")) for name in self.target_names}
        mlps = self._mlps(model) if self.args.cir_loss == MLP_BREAKING else {}
        stop = stop_after(list(mlps.values())[-1]) if mlps else nullcontext()
        if mlps:
            with torch.no_grad(), capture_io(mlps) as original, stop_after(list(mlps.values())[-1]):
                lm_outputs(model, batch, dict(zip(self.target_names, self.original)))
            self.passes += 1
            originals = [original[n][1][selected] for n in mlps]
            # The normaliser is a mean over every process's tokens, as one process would compute it.
            num_tokens = selected.sum()
            mean_norms = token_mean_over_processes([o.float().norm(dim=-1).mean() for o in originals], num_tokens, trainer.accelerator)
        with capture_io({**targets, **mlps}) as captured, stop:
            outputs = lm_outputs(model, batch)
        if mlps:
            loss = mlp_breaking_loss([captured[n][1][selected] for n in mlps], originals, mean_norms)
        else:
            loss = get_loss(self.args.cir_loss)(outputs.logits, batch["labels"])
            num_tokens = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
        return loss, {name: captured[name] for name in targets}, num_tokens

    def compute_loss(self, trainer: UnlearnTrainer, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        model = trainer.accelerator.unwrap_model(model)
        self._init_state([model.get_parameter(n) for n in self.target_names])
        return self._forget_objective(trainer, model, inputs["forget"], self._selected(inputs["forget"]))[0]

    def training_step(self, trainer: UnlearnTrainer, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        args = self.args
        model = trainer.accelerator.unwrap_model(model)
        base = [model.get_parameter(name) for name in self.target_names]
        self._init_state(base)
        forget, retain = inputs["forget"], inputs["retain"]
        selected = self._selected(forget)

        # 1. Forget loss, each target layer's inputs x_t and output gradients g_t on the selected tokens.
        with trainer.compute_loss_context_manager():
            loss, io, loss_tokens = self._forget_objective(trainer, model, forget, selected)
        output_grads = torch.autograd.grad(loss, [out for _, out in io.values()])
        self.passes += 2
        acts = {name: x.detach()[selected].float() for name, (x, _) in io.items()}
        # Gradients of the loss summed (not averaged) over tokens: rows that do not depend on how
        # the batch is split across processes, so the statistics and the bases do not either.
        grads = {name: g[selected].float() * loss_tokens for name, g in zip(io, output_grads)}

        # 2. Raw statistics for the next epoch's bases.
        for name in io:
            self.act_stats.setdefault(name, []).append(acts[name].cpu())
            self.grad_stats.setdefault(name, []).append(grads[name].cpu())

        (loss_value,) = token_mean_over_processes([loss.detach()], loss_tokens, trainer.accelerator)
        metrics = {"unlearning_loss": loss_value}
        if self.act_bases is None:  # epoch 0: statistics only, the weights stay as they are
            trainer.record_metrics(**metrics)
            return loss_value

        # 3. Collapse, rebuild, normalise to step_norm.
        weight_grads = []
        for name, param in zip(io, base):
            grad = rebuild_weight_grad(acts[name], grads[name], self.act_bases[name], self.grad_bases[name])
            module = model.get_submodule(name)
            weight_grads.append(grad.T if isinstance(module, Conv1D) else grad)  # Conv1D stores (in, out)
        weight_grads = mean_over_processes(weight_grads, trainer.accelerator)  # sums over tokens: any scale will do
        norm = global_norm(weight_grads)
        update = [g * (args.step_norm / norm) if norm > 0 else torch.zeros_like(g) for g in weight_grads]

        # Retain step, taken after the unlearning step: its gradient at base - update.
        retain_loss, retain_grad = self._retain_gradient(trainer, model, retain, base, update)
        for p, u, g in zip(base, update, retain_grad):
            p.grad = ((u + args.retaining_rate * g.float()) / args.learning_rate).to(p.dtype)
        self.loops_done += 1
        trainer.record_metrics(**metrics, retain_loss=retain_loss, unlearning_grad_norm=norm)
        return loss_value

    def _retain_gradient(self, trainer, model, retain, base, update) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The relative distance of ``hidden_states[retain_layer]`` to the original's on ``retain``, and its
        gradient at the weights after the unlearning step, averaged over every process's tokens."""
        block = decoder_layers(model)[self.args.retain_layer - 1]  # hidden_states[k] is block k-1's output
        with torch.no_grad():
            original = module_output(model, retain, block, dict(zip(self.target_names, self.original)))
        leaves = [(p.detach().float() - u).to(p.dtype).requires_grad_() for p, u in zip(base, update)]
        with trainer.compute_loss_context_manager():
            current = module_output(model, retain, block, dict(zip(self.target_names, leaves)))
            loss = relative_representation_distance(current, original, retain["attention_mask"])
        grads = torch.autograd.grad(loss, leaves)
        self.passes += 3
        loss, *grads = token_mean_over_processes([loss.detach(), *grads], retain["attention_mask"].sum(), trainer.accelerator)
        return loss, grads

    # --- epochs ----------------------------------------------------------------------------------

    def end_epoch(self, trainer: UnlearnTrainer) -> None:
        """Recompute every module's bases from this epoch's raw statistics (all processes' tokens)."""
        if not self.act_stats:
            return
        self.act_bases, self.grad_bases = {}, {}
        for name in self.act_stats:
            # Step by step, so the rows come in the order one process would have them: identical bases.
            acts = torch.cat([gather_rows(chunk, trainer.accelerator) for chunk in self.act_stats[name]])
            grads = torch.cat([gather_rows(chunk, trainer.accelerator) for chunk in self.grad_stats[name]])
            self.act_bases[name] = principal_basis(acts, self.args.act_components, self.args.pca_niter, self.args.seed).to(trainer.args.device)
            self.grad_bases[name] = principal_basis(grads, self.args.grad_components, self.args.pca_niter, self.args.seed).to(trainer.args.device)
        self.act_stats, self.grad_stats = {}, {}
        self.epochs_done += 1
