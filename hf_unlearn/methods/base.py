"""The interface every unlearning method implements, and the registry that finds it by name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ..targets import resolve_target_modules

if TYPE_CHECKING:
    from ..config import UnlearnConfig
    from ..trainer import UnlearnTrainer

_METHODS: dict[str, type[UnlearningMethod]] = {}


def register_method(cls: type[UnlearningMethod]) -> type[UnlearningMethod]:
    """Class decorator: make ``cls`` selectable as ``UnlearnConfig(method=cls.name)``."""
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


class UnlearningMethod:
    """One unlearning algorithm. ``UnlearnTrainer`` owns the HF plumbing and calls into it.

    A method decides which weights train (``setup``), the loss it minimises on a paired batch
    ``{"forget": batch, "retain": batch}`` (``compute_loss``) and how a training step turns a batch
    into gradients (``training_step``; by default one backward pass of ``compute_loss``). State it
    keeps between steps goes through ``state_dict``/``load_state_dict`` into every checkpoint.
    """

    name: ClassVar[str]
    # True when training_step writes the complete update into param.grad for plain SGD to apply;
    # then momentum, weight decay, clipping or gradient accumulation would silently change the method.
    builds_update: ClassVar[bool] = False

    def __init__(self, args: UnlearnConfig):
        self.args = args
        self.target_names: list[str] = []
        self.passes = 0  # forward and backward passes so far: the compute budget methods are compared at

    @classmethod
    def check_args(cls, args: UnlearnConfig) -> None:
        """Reject settings this method cannot honour, saying how to fix them (called by the config)."""
        if not cls.builds_update:
            return
        fixes = {
            "gradient_accumulation_steps": (args.gradient_accumulation_steps != 1, "set it to 1 and raise per_device_train_batch_size instead: each loop depends on the previous update, so micro-batches cannot be accumulated"),
            "max_grad_norm": (args.max_grad_norm > 0, "set max_grad_norm=0: clipping would rescale the update the method builds (and undo its normalization)"),
            "optim": (str(getattr(args.optim, "value", args.optim)) != "sgd", "set optim='sgd': the method writes its full update into param.grad, which another optimizer would transform"),
            "optim_args": (bool(args.optim_args), "remove optim_args: SGD momentum or dampening would change the update"),
            "weight_decay": (args.weight_decay != 0, "set weight_decay=0: decay would move frozen-by-mask weights too"),
            "learning_rate": (args.learning_rate <= 0, "set learning_rate=1.0: it multiplies the whole update"),
        }  # fmt: skip
        for field_name, (invalid, fix) in fixes.items():
            if invalid:
                raise ValueError(f"{field_name}={getattr(args, field_name)!r} is invalid for method {cls.name!r}: {fix}")

    def setup(self, model: nn.Module) -> None:
        """Choose the trained weights (``args.target_modules``) and freeze every other parameter."""
        targets = resolve_target_modules(model, self.args.target_modules)
        for name, param in model.named_parameters():
            param.requires_grad_(name in targets)
        self.target_names = list(targets)

    def compute_loss(self, trainer: UnlearnTrainer, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def training_step(self, trainer: UnlearnTrainer, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """Default: backpropagate ``compute_loss`` through the accelerator; return the detached loss."""
        with trainer.compute_loss_context_manager():
            loss = self.compute_loss(trainer, model, inputs)
        trainer.accelerator.backward(loss / trainer.current_gradient_accumulation_steps)
        self.passes += 2
        return loss.detach()

    def state_dict(self) -> dict[str, Any]:
        """Everything the method carries between steps; saved in every checkpoint for an exact resume."""
        return {"passes": self.passes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.passes = state["passes"]
