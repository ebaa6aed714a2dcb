"""The update every method shares, the interface a method implements, and the registry of methods.

A method is a forget objective and a retain objective (plus defaults). One training step turns them
into an update with components that work with any method, each a switch in ``UnlearnConfig``:

1. Fork (``meta_learning``): every ``fork_every_n_loops`` steps the adversary := the target weights.
2. Retain: g_r = grad retain objective (base); ``retain_acc = beta*retain_acc + (1-beta)*g_r``.
3. Forget: one forward of the forget batch at the adversary (meta-learning), else at the base
   weights, gives g_u = grad forget objective and, for the adversary, g_a = grad CE; then
   ``adv -= adv_lr*g_a`` and ``adv = d*adv + (1-d)*base``.
4. ``normalize_unlearning_grad``: g_u *= sqrt(N) / ||g_u|| (before masking).
5. ``disruption_masking``: keep g_u where its sign equals retain_acc's.
6. grad = retain_weight * retain_acc + forget_weight * g_u, times the static WAGLE mask if set.

``builds_update`` methods (MUDMAN, TAR) follow MUDMAN's loop exactly: the retain step is taken
first (``base' = base - retaining_rate*retain_acc``, where the unlearning gradient is taken without
an adversary and towards which the adversary decays) and plain SGD at ``learning_rate`` 1 applies
the grad as the whole update. Other methods hand the grad to any optimizer (AdamW by default), so
with every component off they are the plain published losses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import MISSING, fields
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ..distributed import token_mean_over_processes
from ..gradients import disruption_mask, ema_, global_norm, normalize, top_fraction_mask
from ..losses import IGNORE_INDEX, cross_entropy, get_loss, representation_distance
from ..modeling import LMOutputs, lm_outputs
from ..targets import resolve_target_modules

if TYPE_CHECKING:
    from ..config import UnlearnConfig
    from ..trainer import UnlearnTrainer

_METHODS: dict[str, type[UnlearningMethod]] = {}

OutputsLoss = Callable[[LMOutputs], torch.Tensor]


def register_method(cls: type[UnlearningMethod]) -> type[UnlearningMethod]:
    """Class decorator: make ``cls`` selectable as ``cls.config_class(method=cls.name)``."""
    if cls.name in _METHODS:
        raise ValueError(f"a method named {cls.name!r} is already registered")
    _METHODS[cls.name] = cls
    return cls


def available_methods() -> list[str]:
    return sorted(_METHODS)


def get_method_class(name: str) -> type[UnlearningMethod]:
    try:
        return _METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; available methods: {', '.join(available_methods())}") from None


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


def is_peft_model(model: nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


class UnlearningMethod:
    """One unlearning method: its forget and retain objectives; the shared update does the rest.

    Subclasses set ``name`` and ``config_class`` and override ``forget_loss`` (and, if they need
    more than cross-entropy, ``retain_loss``). Objectives receive the model outputs at the weights
    being differentiated and, when ``uses_reference`` says so, the outputs of the original model
    (frozen copies of the trained tensors only, or the model with its PEFT adapter disabled).
    """

    name: ClassVar[str]
    config_class: ClassVar[type]
    builds_update: ClassVar[bool] = False
    uses_reference: ClassVar[frozenset[str]] = frozenset()  # "forget" and/or "retain"
    uses_hidden_states: ClassVar[bool] = False

    def __init__(self, args: UnlearnConfig):
        self.args = args
        self.target_names: list[str] = []
        self.peft = False
        self.passes = 0  # forward and backward passes so far: the compute budget methods are compared at
        self.loops_done = 0
        self.retain_acc: list[torch.Tensor] | None = None  # EMA of retain gradients (fp32)
        self.adversary: list[torch.Tensor] | None = None  # the adversary's target weights (fp32)
        self.original: list[torch.Tensor] | None = None  # the trained tensors before training, for references
        self.wagle_mask: list[torch.Tensor] | None = None  # WAGLE's static mask, computed at the first step

    # --- configuration ---------------------------------------------------------------------------

    @classmethod
    def check_args(cls, args: UnlearnConfig) -> None:
        """Reject settings this method cannot honour, saying how to fix them (called by the config)."""
        if not isinstance(args, cls.config_class):
            raise ValueError(
                f"method={cls.name!r} is configured by {cls.config_class.__name__}, got {type(args).__name__}: "
                f"build hf_unlearn.{cls.config_class.__name__}(...) instead"
            )
        defaults = {f.name: f.default if f.default is not MISSING else f.default_factory() for f in fields(type(args)) if f.init}
        for field_name, why in cls.unused_fields(args).items():
            if getattr(args, field_name) != defaults[field_name]:
                raise ValueError(
                    f"{field_name}={getattr(args, field_name)!r} is not used by method {cls.name!r} ({why}): remove it, "
                    f"or leave it at its default {defaults[field_name]!r}"
                )
        if not cls.builds_update:
            return
        fixes = {
            "gradient_accumulation_steps": (args.gradient_accumulation_steps != 1, "set it to 1 and raise per_device_train_batch_size instead: each loop depends on the previous update, so micro-batches cannot be accumulated"),
            "max_grad_norm": (args.max_grad_norm > 0, "set max_grad_norm=0: clipping would rescale the update the method builds (and undo its normalization)"),
            "optim": (str(getattr(args.optim, "value", args.optim)) != "sgd", "set optim='sgd': the method writes its full update into param.grad, which another optimizer would transform"),
            "optim_args": (bool(args.optim_args), "remove optim_args: SGD momentum or dampening would change the update"),
            "weight_decay": (args.weight_decay != 0, "set weight_decay=0: decay would move frozen-by-mask weights too"),
            "learning_rate": (args.learning_rate <= 0, "set learning_rate=1.0: it multiplies the whole update"),
            "lr_scheduler_type": (str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)) != "constant", "set lr_scheduler_type='constant': a schedule would scale the update but not the retain step or the adversary built inside it, which is no longer the method"),
            "warmup_steps": (args.warmup_steps > 0, "set warmup_steps=0: warm-up is a schedule (see lr_scheduler_type)"),
        }  # fmt: skip
        for field_name, (invalid, fix) in fixes.items():
            if invalid:
                raise ValueError(f"{field_name}={getattr(args, field_name)!r} is invalid for method {cls.name!r}: {fix}")

    @classmethod
    def unused_fields(cls, args: UnlearnConfig) -> dict[str, str]:
        """``{field: why}`` for the settings this method does not read under ``args``; ``check_args`` refuses
        any of them set away from its default, since a setting nobody reads would silently change nothing."""
        unused = {}
        if cls.forget_loss is not UnlearningMethod.forget_loss:
            unused["unlearning_loss"] = "it has a forget objective of its own"
        if cls.retain_loss is not UnlearningMethod.retain_loss:
            unused["retain_representation_weight"] = "it has a retain objective of its own"
        if not args.meta_learning:
            unused.update(dict.fromkeys(("adv_lr", "adv_decay", "fork_every_n_loops"), "meta_learning is off"))
        if args.wagle_fraction == 1:
            unused["wagle_gamma"] = "wagle_fraction is 1: WAGLE is off"
        return unused

    def setup(self, model: nn.Module, processing_class: Any = None) -> None:
        """Choose the trained weights and freeze every other parameter.

        A PEFT model trains its adapter (the parameters PEFT left trainable); otherwise
        ``args.target_modules`` names them. ``processing_class``: the trainer's tokenizer.
        """
        self.peft = is_peft_model(model)
        if self.peft:
            targets = [name for name, param in model.named_parameters() if param.requires_grad]
        else:
            targets = list(resolve_target_modules(model, self.target_modules(model)))
            check_not_tied(model, targets)
        for name, param in model.named_parameters():
            param.requires_grad_(name in targets)
        self.target_names = targets

    def target_modules(self, model: nn.Module) -> list[str]:
        return self.args.target_modules

    def check_eval_dataset(self, eval_dataset: Any) -> None:
        """Reject an ``eval_dataset`` the method cannot work with (before the Trainer is built)."""

    def callbacks(self, trainer: UnlearnTrainer) -> list:
        """``TrainerCallback``s the method needs (CIR: epoch ends, its disruption budget)."""
        return []

    # --- the objectives --------------------------------------------------------------------------

    @property
    def needs_original(self) -> bool:
        return bool(self.uses_reference) or self.args.retain_representation_weight > 0

    @property
    def needs_hidden_states(self) -> bool:
        return self.uses_hidden_states or self.args.retain_representation_weight > 0

    def forget_loss(self, outputs: LMOutputs, batch: dict[str, torch.Tensor], reference: LMOutputs | None) -> torch.Tensor:
        """The objective minimised on the forget batch. Default: ``args.unlearning_loss`` on the logits."""
        return get_loss(self.args.unlearning_loss)(outputs.logits, batch["labels"])

    def retain_loss(self, outputs: LMOutputs, batch: dict[str, torch.Tensor], reference: LMOutputs | None) -> torch.Tensor:
        """The objective minimised on the retain batch: cross-entropy, plus (TAR) the squared distance of
        every layer's representations to the original model's, times ``retain_representation_weight``."""
        loss = cross_entropy(outputs.logits, batch["labels"])
        if self.args.retain_representation_weight > 0:
            mask = batch["attention_mask"]
            # The last hidden state is left out: its scale is far larger than the others' (MUDMAN, TAR).
            distances = [
                representation_distance(h, h_orig, mask, squared=True)
                for h, h_orig in zip(outputs.hidden_states[:-1], reference.hidden_states[:-1])
            ]
            loss = loss + self.args.retain_representation_weight * torch.stack(distances).mean()
        return loss

    def loss_weights(self, step: int, max_steps: int) -> tuple[float, float]:
        """(retain weight, forget weight) at ``step``; Circuit Breakers schedules them."""
        return self.args.retaining_rate, self.args.unlearning_rate

    @property
    def forget_is_neg_cross_entropy(self) -> bool:
        return type(self).forget_loss is UnlearningMethod.forget_loss and self.args.unlearning_loss == "neg_cross_entropy"

    def compute_loss(self, trainer: UnlearnTrainer, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """The method's objective at the current weights: retain_weight * retain + forget_weight * forget."""
        retain_weight, forget_weight = self.loss_weights(trainer.state.global_step, trainer.state.max_steps)
        model = trainer.accelerator.unwrap_model(model)
        self._init_state([model.get_parameter(name) for name in self.target_names])
        total = 0.0
        for part, weight, objective in (("retain", retain_weight, self.retain_loss), ("forget", forget_weight, self.forget_loss)):
            if weight:
                batch = inputs[part]
                reference = self._reference(model, batch, part)
                total = total + weight * objective(lm_outputs(model, batch, None, self.needs_hidden_states), batch, reference)
        return torch.as_tensor(total)

    # --- the shared update -----------------------------------------------------------------------

    def training_step(self, trainer: UnlearnTrainer, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        args = self.args
        # Forward passes go to the unwrapped model: gradients are averaged across processes here,
        # once per gradient, instead of by DDP hooks that expect exactly one backward per forward.
        model = trainer.accelerator.unwrap_model(model)
        base = [model.get_parameter(name) for name in self.target_names]
        self._init_state(base)
        retain_weight, forget_weight = self.loss_weights(trainer.state.global_step, trainer.state.max_steps)
        forget, retain = inputs["forget"], inputs["retain"]
        if args.wagle_fraction < 1 and self.wagle_mask is None:
            self.wagle_mask = self._wagle_mask(trainer, model, base, forget, retain)

        # 1. Fork the adversary.
        if args.meta_learning and self.loops_done % args.fork_every_n_loops == 0:
            self.adversary = [p.detach().float().clone() for p in base]

        # 2. Retain gradient and its EMA (skipped when nothing uses it).
        retain_loss = None
        if retain_weight or args.disruption_masking:
            reference = self._reference(model, retain, "retain")
            (retain_loss,), (retain_grad,) = self._losses_and_grads(
                trainer, model, retain, base, base, [lambda out: self.retain_loss(out, retain, reference)]
            )
            for acc, g in zip(self.retain_acc, retain_grad):
                ema_(acc, g.float(), args.retain_momentum)
        if self.builds_update:  # MUDMAN's loop: the retain step comes first
            anchor = [p.detach().float() - retain_weight * acc for p, acc in zip(base, self.retain_acc)]
        else:
            anchor = [p.detach().float() for p in base]

        # 3. One forward of the forget batch (at the adversary with meta-learning): g_u and g_a.
        attacked = self.adversary if args.meta_learning else anchor
        reference = self._reference(model, forget, "forget")
        forget_ce: OutputsLoss = lambda out: cross_entropy(out.logits, forget["labels"])  # noqa: E731
        objective: OutputsLoss = lambda out: self.forget_loss(out, forget, reference)  # noqa: E731
        if self.forget_is_neg_cross_entropy:  # g_u = -g_a exactly: one backward pass fewer
            (forget_loss,), (adversary_grad,) = self._losses_and_grads(trainer, model, forget, base, attacked, [forget_ce])
            unlearning_loss, unlearning_grad = -forget_loss, [-g for g in adversary_grad]
        elif args.meta_learning:
            (forget_loss, unlearning_loss), (adversary_grad, unlearning_grad) = self._losses_and_grads(
                trainer, model, forget, base, attacked, [forget_ce, objective]
            )
        else:  # no adversary to train: the forget cross-entropy is not needed
            (unlearning_loss,), (unlearning_grad,) = self._losses_and_grads(trainer, model, forget, base, attacked, [objective])
            forget_loss = None
        if args.meta_learning:
            for adv, g, target in zip(self.adversary, adversary_grad, anchor):
                adv.sub_(g.float(), alpha=args.adv_lr).mul_(args.adv_decay).add_(target, alpha=1 - args.adv_decay)

        # 4. Normalize, before masking, over all target weights together.
        unlearning_grad_norm = global_norm(unlearning_grad)
        if args.normalize_unlearning_grad:
            unlearning_grad = normalize(unlearning_grad, unlearning_grad_norm)

        # 5. Disruption Masking against the retain-gradient EMA.
        kept = 1.0
        if args.disruption_masking:
            masks = [disruption_mask(g, acc) for g, acc in zip(unlearning_grad, self.retain_acc)]
            unlearning_grad = [g * m for g, m in zip(unlearning_grad, masks)]
            kept = sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)

        # 6. The gradient (or, for builds_update, the whole update) for the optimizer.
        for i, (p, acc, g) in enumerate(zip(base, self.retain_acc, unlearning_grad)):
            grad = retain_weight * acc + forget_weight * g.float()
            if self.wagle_mask is not None:
                grad = grad * self.wagle_mask[i]
            if self.builds_update:
                p.grad = (grad / args.learning_rate).to(p.dtype)
            else:  # accumulate over micro-batches like backward() would
                grad = (grad / trainer.current_gradient_accumulation_steps).to(p.dtype)
                p.grad = grad if p.grad is None else p.grad + grad

        self.loops_done += 1
        metrics = {"unlearning_loss": unlearning_loss, "unlearning_grad_norm": unlearning_grad_norm, "mask_kept_fraction": kept}
        if retain_loss is not None:
            metrics["retain_loss"] = retain_loss
        if forget_loss is not None:
            metrics["adversary_forget_loss" if args.meta_learning else "forget_loss"] = forget_loss
        trainer.record_metrics(**metrics)
        return unlearning_loss

    def _init_state(self, base: Sequence[nn.Parameter]) -> None:
        if self.retain_acc is None:
            self.retain_acc = [torch.zeros_like(p, dtype=torch.float32) for p in base]
        if self.needs_original and self.original is None and not self.peft:
            self.original = [p.detach().clone() for p in base]

    @torch.no_grad()
    def _reference(self, model: nn.Module, batch: dict[str, torch.Tensor], part: str) -> LMOutputs | None:
        """Outputs of the original model on ``batch`` when the ``part`` objective uses them."""
        if part not in self.uses_reference and not (part == "retain" and self.args.retain_representation_weight > 0):
            return None
        self.passes += 1
        if self.peft:
            with model.disable_adapter():
                return lm_outputs(model, batch, None, self.needs_hidden_states)
        return lm_outputs(model, batch, dict(zip(self.target_names, self.original)), self.needs_hidden_states)

    def _wagle_mask(self, trainer, model, base, forget, retain) -> list[torch.Tensor]:
        """WAGLE (Jia et al. 2024): keep the top ``wagle_fraction`` of weights by |(theta - g_r/gamma) * g_f|."""
        retain_ref, forget_ref = self._reference(model, retain, "retain"), self._reference(model, forget, "forget")
        _, (retain_grad,) = self._losses_and_grads(trainer, model, retain, base, base, [lambda out: self.retain_loss(out, retain, retain_ref)])
        _, (forget_grad,) = self._losses_and_grads(trainer, model, forget, base, base, [lambda out: self.forget_loss(out, forget, forget_ref)])
        scores = [
            ((p.detach().float() - g_r.float() / self.args.wagle_gamma) * g_f.float()).abs()
            for p, g_r, g_f in zip(base, retain_grad, forget_grad)
        ]
        return top_fraction_mask(scores, self.args.wagle_fraction)

    def _losses_and_grads(
        self,
        trainer: UnlearnTrainer,
        model: nn.Module,
        batch: dict[str, torch.Tensor],
        base: Sequence[nn.Parameter],
        weights: Sequence[torch.Tensor],
        loss_fns: Sequence[OutputsLoss],
    ) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """One forward of ``batch`` with the ``base`` target weights set to ``weights``; each loss and its gradient.

        Gradients are with respect to the target weights only (everything else is frozen, so no other
        weight gradient is ever computed). Losses and gradients are averaged over the target tokens of
        all processes, so any number of processes computes what one would on the global batch.
        """
        leaves = [w.detach().to(p.dtype).requires_grad_() for w, p in zip(weights, base)]
        with trainer.compute_loss_context_manager():
            outputs = lm_outputs(model, batch, dict(zip(self.target_names, leaves)), self.needs_hidden_states)
            losses = [fn(outputs) for fn in loss_fns]
        grads = [torch.autograd.grad(loss, leaves, retain_graph=i + 1 < len(losses)) for i, loss in enumerate(losses)]
        self.passes += 1 + len(losses)  # one forward, one backward per loss
        # One all-reduce for the losses and all gradients of this pass.
        num_tokens = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
        flat = [loss.detach() for loss in losses] + [g for grad in grads for g in grad]
        flat = token_mean_over_processes(flat, num_tokens, trainer.accelerator)
        values, flat_grads, n = flat[: len(losses)], flat[len(losses) :], len(leaves)
        return values, [flat_grads[i * n : (i + 1) * n] for i in range(len(losses))]

    # --- checkpointing ---------------------------------------------------------------------------

    _STATE = ("passes", "loops_done", "retain_acc", "adversary", "original", "wagle_mask")

    def state_dict(self) -> dict[str, Any]:
        """Everything the method carries between steps; saved in every checkpoint for an exact resume."""
        return {key: getattr(self, key) for key in self._STATE}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        """Restore ``state_dict()``; tensors go to ``device`` (the trained weights'), but ``_CPU_STATE`` ones."""
        for key in self._STATE:
            setattr(self, key, state[key] if key in self._CPU_STATE else to_device(state[key], device))

    _CPU_STATE: tuple[str, ...] = ()


def to_device(value: Any, device: torch.device | str) -> Any:
    """``value`` with every tensor in it (nested in lists, tuples, dicts) moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    return value

