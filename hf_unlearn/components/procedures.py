"""Update procedures: how one training step turns an objective into an update.

- ``OptimizerUpdate``: the objective's gradient for any HF optimizer (baselines; gradient
  accumulation works as with ``backward()``), with the composable components on top.
- ``MetaUnlearningLoop``: MUDMAN's loop, the whole update written for plain SGD at learning rate 1.
- CIR's collapsed update lives with CIR (``methods/cir.py``).

A procedure owns its state (retain momentum, adversary, reference weights, masks, counters),
saved in every checkpoint so that resuming continues exactly.

**MUDMAN's loop** (Sondej et al. 2025, arXiv 2506.12484; README and docstrings point here). One
trainer step is one loop over the target weights ``base``:

1. Fork: every ``fork_every_n_loops`` loops the adversary := ``base`` (``meta_learning``).
2. Retain: ``g_r`` = gradient of the retain objective at ``base``; the retain direction
   ``r = beta*r + (1-beta)*g_r`` (``retain_momentum``); the retain step ``base' = base -
   retaining_rate*r`` is taken first.
3. Forget: one forward of the forget batch at the adversary (at ``base'`` without meta-learning)
   gives ``g_u`` = gradient of the forget objective and, for the adversary, ``g_a`` = gradient of
   the forget cross-entropy (with ``neg_cross_entropy``, ``g_u = -g_a``: one backward fewer). Then
   ``adv -= adv_lr*g_a`` and ``adv = d*adv + (1-d)*base'`` (``adv_decay``).
4. Normalize: ``g_u *= sqrt(N) / ||g_u||`` over all target weights, before masking.
5. Mask: keep ``g_u`` where its sign equals ``r``'s (Disruption Masking).
6. Update: ``base -= retaining_rate*r + unlearning_rate*g_u`` (times WAGLE's static mask).

Under FSDP2 every step runs on each process's shards of the weights, gradients and state
(``sharded_losses_and_grads``; docs/design.md §8.1).

``OptimizerUpdate`` runs the same steps 1-5 (the forget gradient taken at ``base`` itself) and
hands ``retaining_rate*r + unlearning_rate*g_u`` to the optimizer as the gradient, so with every
component off it is the plain weighted sum of the objective's two losses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import MISSING, dataclass, fields
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..distributed import sum_over_processes, token_mean_over_processes
from ..forward import LMOutputs, is_sharded, lm_outputs, weights_written
from ..gradients import at_least_float32, global_norm, loss_gradients, normalize_
from ..losses import IGNORE_INDEX, cross_entropy
from ..objective import Objective
from ..targets import resolve_target_modules
from .arguments import check_component_args
from .transforms import (
    Adversary,
    DisruptionMask,
    Reference,
    RetainMomentum,
    WagleMask,
    representation_anchor,
    to_device,
)

if TYPE_CHECKING:
    from ..registry import MethodSpec

OutputsLoss = Callable[[LMOutputs], torch.Tensor]
Metrics = dict[str, "torch.Tensor | float"]


@dataclass(frozen=True)
class StepContext:
    """What a procedure needs of the training loop for one step. The trainer builds it and records the metrics
    the procedure returns: procedures never see (or import) the trainer."""

    accelerator: Any  # accelerate's Accelerator: unwrapping the model, reductions across processes
    global_step: int
    max_steps: int
    epoch: float
    gradient_accumulation_steps: int  # micro-batches accumulated into this step
    device: torch.device
    autocast: Callable[[], AbstractContextManager]  # the trainer's compute_loss_context_manager (bf16 autocast)


def is_peft_model(model: nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


def check_not_tied(model: nn.Module, targets: Sequence[str]) -> None:
    """A target that is another parameter under a second name (a tied output head) would train nothing under
    its own name: refuse it, naming the parameter it shares."""
    canonical = {id(param): name for name, param in model.named_parameters()}
    for name, param in model.named_parameters(remove_duplicate=False):
        if name in targets and canonical[id(param)] != name:
            raise ValueError(
                f"{name} is tied to {canonical[id(param)]} (tie_word_embeddings): it is the same matrix, so it cannot be "
                "trained on its own; target other modules, or untie the embeddings before unlearning"
            )


def field_defaults(config_class: type) -> dict[str, Any]:
    return {f.name: f.default if f.default is not MISSING else f.default_factory() for f in fields(config_class) if f.init}


class UpdateProcedure:
    """How a step is taken: chooses the trained weights, turns the objective into ``param.grad``, keeps state."""

    def __init__(self, args: Any, objective: Objective):
        self.args, self.objective = args, objective
        self.target_names: list[str] = []
        self.passes = 0  # forward and backward passes so far: the compute budget methods are compared at

    @classmethod
    def check_args(cls, args: Any, spec: MethodSpec) -> None:
        """Refuse settings the procedure cannot honour, and any setting nobody reads set away from its default."""
        check_component_args(args)
        defaults = field_defaults(type(args))
        for field_name, why in cls.unused_fields(args).items():
            if getattr(args, field_name) != defaults[field_name]:
                raise ValueError(
                    f"{field_name}={getattr(args, field_name)!r} is not used by method {spec.name!r} ({why}): remove it, "
                    f"or leave it at its default {defaults[field_name]!r}"
                )

    @classmethod
    def unused_fields(cls, args: Any) -> dict[str, str]:
        """``{field: why}`` for settings of ``args`` this procedure does not read under them."""
        return {}

    def setup(self, model: nn.Module, processing_class: Any = None) -> None:
        """Fit the objective's layer settings to the model, choose the trained weights and freeze every other parameter.

        A PEFT model trains its adapter (the parameters PEFT left trainable); otherwise the
        objective's ``target_modules`` name them.
        """
        self.objective.fit_to_model(model)
        if is_peft_model(model):
            targets = [name for name, param in model.named_parameters() if param.requires_grad]
        else:
            targets = list(resolve_target_modules(model, self.objective.target_modules(model)))
            check_not_tied(model, targets)
        for name, param in model.named_parameters():
            param.requires_grad_(name in targets)
        self.target_names = targets

    def training_step(self, step: StepContext, model: nn.Module, inputs: dict[str, Any]) -> tuple[torch.Tensor, Metrics]:
        """Write the step's update into the target weights' ``.grad``; return the loss and the metrics to log."""
        raise NotImplementedError

    def compute_loss(self, step: StepContext, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Everything the procedure carries between steps, as plain tensors and numbers: saved in every
        checkpoint (loaded with ``weights_only=True``) for an exact resume."""
        return {"passes": self.passes}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        """Restore ``state_dict()``, tensors on ``device`` (the trained weights')."""
        self.passes = state["passes"]

    def losses_and_grads(
        self,
        step: StepContext,
        model: nn.Module,
        batch: dict[str, torch.Tensor],
        base: Sequence[nn.Parameter],
        weights: Sequence[torch.Tensor],
        loss_fns: Sequence[OutputsLoss],
        hidden_states: bool,
    ) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """One forward of ``batch`` with the ``base`` target weights set to ``weights``; each loss and its gradient.

        Gradients are with respect to the target weights only (everything else is frozen, so no other
        weight gradient is ever computed). Losses and gradients are averaged over the target tokens of
        all processes, so any number of processes computes what one would on the global batch.
        """
        if is_sharded(model):
            return self.sharded_losses_and_grads(step, model, batch, base, weights, loss_fns, hidden_states)
        leaves = [w.detach().to(p.dtype).requires_grad_() for w, p in zip(weights, base)]
        with step.autocast():
            outputs = lm_outputs(model, batch, dict(zip(self.target_names, leaves)), hidden_states)
            losses = [fn(outputs) for fn in loss_fns]
        del outputs  # the logits (vocabulary-wide) are not needed by the backward pass: free them before it
        grads = [loss_gradients(loss, leaves, retain_graph=i + 1 < len(losses)) for i, loss in enumerate(losses)]
        self.passes += 1 + len(losses)  # one forward, one backward per loss
        # One all-reduce for the losses and all gradients of this pass.
        num_tokens = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
        flat = [loss.detach() for loss in losses] + [g for grad in grads for g in grad]
        flat = token_mean_over_processes(flat, num_tokens, step.accelerator)
        values, flat_grads, n = flat[: len(losses)], flat[len(losses) :], len(leaves)
        return values, [flat_grads[i * n : (i + 1) * n] for i in range(len(losses))]


    def sharded_losses_and_grads(
        self,
        step: StepContext,
        model: nn.Module,
        batch: dict[str, torch.Tensor],
        base: Sequence[nn.Parameter],
        weights: Sequence[torch.Tensor],
        loss_fns: Sequence[OutputsLoss],
        hidden_states: bool,
        num_tokens: torch.Tensor | None = None,
    ) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """``losses_and_grads`` under FSDP2: the gradients are this process's shards of the global ones.
        ``num_tokens``: the tokens each loss averages over, if not the target tokens of ``batch``'s labels.

        FSDP2 gathers each layer's weights for its forward and backward and reduce-scatters the weight
        gradients, so the gradients are taken by ``backward()`` into ``param.grad`` (moved aside and put
        back: it holds the step's accumulated update), the other weights written into the shards for
        the pass (``weights_written``). FSDP averages the processes' gradients: scaling each process's
        token-mean loss by its share of the global target tokens (times the process count) makes that
        average the global token mean, as ``token_mean_over_processes`` does for DDP.
        """
        num_tokens = (batch["labels"][:, 1:] != IGNORE_INDEX).sum() if num_tokens is None else num_tokens
        share = num_tokens * step.accelerator.num_processes / sum_over_processes(num_tokens, step.accelerator)
        accumulated = [p.grad for p in base]
        # Trainer's gradient accumulation turns FSDP's reduce-scatter off but for the last micro-batch: every
        # gradient here is a complete one, taken and reduced now.
        model.set_requires_gradient_sync(True)
        changed = {name: w for name, w, p in zip(self.target_names, weights, base) if w is not p}
        grads = []
        with weights_written(model, changed) if changed else nullcontext():
            for p in base:
                p.grad = None
            with step.autocast():
                outputs = lm_outputs(model, batch, None, hidden_states)
                losses = [fn(outputs) for fn in loss_fns]
            del outputs
            for i, loss in enumerate(losses):
                if loss.requires_grad:
                    (loss * share).backward(retain_graph=i + 1 < len(losses))
                # A weight the loss does not depend on gets no gradient (see loss_gradients): zero.
                grads.append([torch.zeros_like(p) if p.grad is None else p.grad for p in base])
                for p in base:
                    p.grad = None
        for p, grad in zip(base, accumulated):
            p.grad = grad
        self.passes += 1 + len(losses)
        values = token_mean_over_processes([loss.detach() for loss in losses], num_tokens, step.accelerator)
        return values, grads


class OptimizerUpdate(UpdateProcedure):
    """The objective's gradient, with the components the config switches on, for any HF optimizer.

    ``retaining_rate * r + unlearning_rate * g_u`` is accumulated into ``param.grad`` as
    ``backward()`` would (gradient accumulation works); the steps are those of MUDMAN's loop (module
    docstring) with the forget gradient taken at the weights themselves (or at the adversary).
    """

    writes_full_update = False  # MetaUnlearningLoop: the grad is the whole update, retain step first

    def __init__(self, args: Any, objective: Objective):
        super().__init__(args, objective)
        self.loops_done = 0
        self.anchor_weight = getattr(args, "retain_representation_weight", 0.0)  # TAR's term (RepresentationAnchorArguments)
        self.masking = DisruptionMask() if getattr(args, "disruption_masking", False) else None
        self.normalize = getattr(args, "normalize_unlearning_grad", False)
        self.retain = RetainMomentum(getattr(args, "retain_momentum", 0.0))
        self.adversary = Adversary(args.adv_lr, args.adv_decay, args.fork_every_n_loops) if getattr(args, "meta_learning", False) else None
        self.wagle = WagleMask(args.wagle_fraction, args.wagle_gamma) if getattr(args, "wagle_fraction", 1.0) < 1 else None
        self.reference: Reference | None = None
        self.hidden_states = objective.uses_hidden_states or self.anchor_weight > 0

    @classmethod
    def unused_fields(cls, args: Any) -> dict[str, str]:
        unused = {}
        if not getattr(args, "meta_learning", True):
            unused.update(dict.fromkeys(("adv_lr", "adv_decay", "fork_every_n_loops"), "meta_learning is off"))
        if getattr(args, "wagle_fraction", 0) == 1:
            unused["wagle_gamma"] = "wagle_fraction is 1: WAGLE is off"
        return unused

    def setup(self, model: nn.Module, processing_class: Any = None) -> None:
        super().setup(model, processing_class)
        if self.objective.uses_reference or self.anchor_weight > 0:
            self.reference = Reference(peft=is_peft_model(model))

    # --- the objective, with TAR's representation anchor on the retain side -------------------------

    def reference_outputs(self, model: nn.Module, batch: dict[str, torch.Tensor], part: str) -> LMOutputs | None:
        """Outputs of the original model on ``batch`` when the ``part`` objective uses them."""
        if part not in self.objective.uses_reference and not (part == "retain" and self.anchor_weight > 0):
            return None
        self.passes += 1
        return self.reference.outputs(model, batch, self.target_names, self.hidden_states)

    def retain_objective(self, batch: dict[str, torch.Tensor], reference: LMOutputs | None) -> OutputsLoss:
        def loss(outputs: LMOutputs) -> torch.Tensor:
            value = self.objective.retain_loss(outputs, batch, reference)
            if self.anchor_weight > 0:
                value = value + self.anchor_weight * representation_anchor(outputs, reference, batch["attention_mask"])
            return value

        return loss

    def forget_objective(self, batch: dict[str, torch.Tensor], reference: LMOutputs | None) -> OutputsLoss:
        return lambda outputs: self.objective.forget_loss(outputs, batch, reference)

    @property
    def forget_is_neg_cross_entropy(self) -> bool:
        return type(self.objective).forget_loss is Objective.forget_loss and self.args.unlearning_loss == "neg_cross_entropy"

    def compute_loss(self, step: StepContext, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """The method's objective at the current weights: retain_weight * retain + forget_weight * forget."""
        retain_weight, forget_weight = self.objective.loss_weights(step.global_step, step.max_steps)
        model = step.accelerator.unwrap_model(model)
        self._initialize([model.get_parameter(name) for name in self.target_names])
        total = 0.0
        for part, weight, make in (("retain", retain_weight, self.retain_objective), ("forget", forget_weight, self.forget_objective)):
            if weight:
                batch = inputs[part]
                objective = make(batch, self.reference_outputs(model, batch, part))
                total = total + weight * objective(lm_outputs(model, batch, None, self.hidden_states))
        return torch.as_tensor(total)

    # --- one step (module docstring) ----------------------------------------------------------------

    def training_step(self, step: StepContext, model: nn.Module, inputs: dict[str, Any]) -> tuple[torch.Tensor, Metrics]:
        # Forward passes go to the unwrapped model: gradients are averaged across processes here,
        # once per gradient, instead of by DDP hooks that expect exactly one backward per forward.
        model = step.accelerator.unwrap_model(model)
        base = [model.get_parameter(name) for name in self.target_names]
        self._initialize(base)
        retain_weight, forget_weight = self.objective.loss_weights(step.global_step, step.max_steps)
        forget, retain = inputs["forget"], inputs["retain"]
        if self.wagle is not None and self.wagle.mask is None:
            self._initialize_wagle(step, model, base, forget, retain)

        # 1. Fork the adversary.
        if self.adversary is not None:
            self.adversary.fork_if_due(base, self.loops_done)

        # 2. The retain direction (skipped when nothing uses it).
        retain_loss, direction = None, None
        if retain_weight or self.masking is not None:
            objective = self.retain_objective(retain, self.reference_outputs(model, retain, "retain"))
            (retain_loss,), (retain_grad,) = self.losses_and_grads(step, model, retain, base, base, [objective], self.hidden_states)
            direction = self.retain(retain_grad)
            del retain_grad  # with momentum, the EMA holds the direction: the gradient's memory is free again
        # The weights after the retain step (MUDMAN's loop takes it first): where the forget gradient is taken
        # without an adversary, and what a decaying adversary decays towards. Not built when nothing reads it.
        anchor = None
        if self.adversary is None or self.adversary.decay < 1:
            if self.writes_full_update and direction is not None:
                anchor = [at_least_float32(p.detach()) - retain_weight * r for p, r in zip(base, direction)]
            else:
                anchor = [at_least_float32(p.detach()) for p in base]

        # 3. One forward of the forget batch (at the adversary with meta-learning): g_u and g_a.
        attacked = self.adversary.weights if self.adversary is not None else anchor
        objective = self.forget_objective(forget, self.reference_outputs(model, forget, "forget"))
        forget_ce: OutputsLoss = lambda out: cross_entropy(out.logits, forget["labels"])  # noqa: E731
        forget_loss, sign = None, 1.0
        if self.forget_is_neg_cross_entropy:  # g_u = -g_a exactly: one backward pass fewer
            (forget_loss,), (adversary_grad,) = self.losses_and_grads(step, model, forget, base, attacked, [forget_ce], self.hidden_states)
            unlearning_loss, unlearning_grad, sign = -forget_loss, adversary_grad, -1.0  # g_a's buffers, negated below
        elif self.adversary is not None:
            (forget_loss, unlearning_loss), (adversary_grad, unlearning_grad) = self.losses_and_grads(
                step, model, forget, base, attacked, [forget_ce, objective], self.hidden_states
            )
        else:  # no adversary to train: the forget cross-entropy is not needed
            (unlearning_loss,), (unlearning_grad,) = self.losses_and_grads(step, model, forget, base, attacked, [objective], self.hidden_states)
        if self.adversary is not None:
            self.adversary.step(adversary_grad, anchor)
        # From here on the update is built in place in the gradient's own (fp32) buffers: no full-size copies.
        unlearning_grad = [at_least_float32(g) for g in unlearning_grad]

        # 4. Normalize, before masking, over all target weights together (with g_u = -g_a, the sign folds in).
        unlearning_grad_norm = global_norm(unlearning_grad)
        if self.normalize:
            normalize_(unlearning_grad, unlearning_grad_norm, sign)
        elif sign < 0:
            torch._foreach_neg_(unlearning_grad)

        # 5. Disruption Masking against the retain direction.
        kept = 1.0
        if self.masking is not None:
            kept = self.masking(unlearning_grad, direction)

        # 6. The gradient (or, for the meta-unlearning loop, the whole update) for the optimizer.
        for i, (p, g) in enumerate(zip(base, unlearning_grad)):
            grad = g.mul_(forget_weight) if direction is None else g.mul_(forget_weight).add_(direction[i], alpha=retain_weight)
            if self.wagle is not None:
                grad.mul_(self.wagle.mask[i])
            if self.writes_full_update:  # applied as it is: SGD at learning rate 1 (check_full_update_args)
                p.grad = grad.to(p.dtype)
            else:  # accumulate over micro-batches like backward() would
                grad = grad.div_(step.gradient_accumulation_steps).to(p.dtype)
                p.grad = grad if p.grad is None else p.grad + grad

        self.loops_done += 1
        metrics = {"unlearning_loss": unlearning_loss, "unlearning_grad_norm": unlearning_grad_norm, "mask_kept_fraction": kept}
        if retain_loss is not None:
            metrics["retain_loss"] = retain_loss
        if forget_loss is not None:
            metrics["adversary_forget_loss" if self.adversary is not None else "forget_loss"] = forget_loss
        return unlearning_loss, metrics

    def _initialize(self, base: Sequence[nn.Parameter]) -> None:
        if self.reference is not None:
            self.reference.initialize(base)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "loops_done": self.loops_done,
            "retain_ema": self.retain.ema,
            "adversary": None if self.adversary is None else self.adversary.weights,
            "original": None if self.reference is None else self.reference.original,
            "wagle_mask": None if self.wagle is None else self.wagle.mask,
        }

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        super().load_state_dict(state, device)
        state = to_device(state, device)
        self.loops_done, self.retain.ema = state["loops_done"], state["retain_ema"]
        for component, attribute, key in ((self.adversary, "weights", "adversary"), (self.reference, "original", "original"), (self.wagle, "mask", "wagle_mask")):
            if component is not None:
                setattr(component, attribute, state[key])

    def _initialize_wagle(self, step: StepContext, model: nn.Module, base: Sequence[nn.Parameter], forget: dict, retain: dict) -> None:
        retain_objective = self.retain_objective(retain, self.reference_outputs(model, retain, "retain"))
        forget_objective = self.forget_objective(forget, self.reference_outputs(model, forget, "forget"))
        _, (retain_grad,) = self.losses_and_grads(step, model, retain, base, base, [retain_objective], self.hidden_states)
        _, (forget_grad,) = self.losses_and_grads(step, model, forget, base, base, [forget_objective], self.hidden_states)
        self.wagle.initialize(base, retain_grad, forget_grad)


class MetaUnlearningLoop(OptimizerUpdate):
    """MUDMAN's loop (module docstring): the retain step first, the whole update written into ``param.grad``
    for plain SGD at learning rate 1, so the settings that would transform it are refused."""

    writes_full_update = True

    @classmethod
    def check_args(cls, args: Any, spec: MethodSpec) -> None:
        super().check_args(args, spec)
        check_full_update_args(args, spec.name)


def check_full_update_args(args: Any, method: str) -> None:
    """A method that writes its whole update into ``param.grad`` needs plain SGD to apply it unchanged."""
    fixes = {
        "gradient_accumulation_steps": (args.gradient_accumulation_steps != 1, "set it to 1 and raise per_device_train_batch_size instead: each loop depends on the previous update, so micro-batches cannot be accumulated"),
        "max_grad_norm": (args.max_grad_norm > 0, "set max_grad_norm=0: clipping would rescale the update the method builds (and undo its normalization)"),
        "optim": (str(getattr(args.optim, "value", args.optim)) != "sgd", "set optim='sgd': the method writes its full update into param.grad, which another optimizer would transform"),
        "optim_args": (bool(args.optim_args), "remove optim_args: SGD momentum or dampening would change the update"),
        "weight_decay": (args.weight_decay != 0, "set weight_decay=0: decay would move frozen-by-mask weights too"),
        "learning_rate": (args.learning_rate != 1, "set learning_rate=1.0: SGD applies the update the method builds as it is (the method's own rates, e.g. unlearning_rate or step_norm, set its size)"),
        "lr_scheduler_type": (str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)) != "constant", "set lr_scheduler_type='constant': a schedule would scale the update but not the retain step or the adversary built inside it, which is no longer the method"),
        "warmup_steps": (args.warmup_steps > 0, "set warmup_steps=0: warm-up is a schedule (see lr_scheduler_type)"),
    }  # fmt: skip
    for field_name, (invalid, fix) in fixes.items():
        if invalid:
            raise ValueError(f"{field_name}={getattr(args, field_name)!r} is invalid for method {method!r}: {fix}")
