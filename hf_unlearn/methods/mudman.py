"""MUDMAN: Meta-Unlearning with Disruption Masking And Normalization.

Sondej, Yang, Kniejski, Windys (2025), "Robust LLM Unlearning with MUDMAN: Meta-Unlearning with
Disruption Masking And Normalization", arXiv 2506.12484. One loop (one trainer step):

1. Fork: every ``fork_every_n_loops`` loops the adversary := a copy of the base target weights.
2. Retain: g_r = grad CE(base; retain batch); retain_acc = beta*retain_acc + (1-beta)*g_r;
   base' = base - retaining_rate * retain_acc.
3. Adversary: one forward of the forget batch at the adversary weights (base' without
   meta-learning) gives g_a = grad CE(forget) and g_u = grad L_unlearn(forget). Then
   adv -= adv_lr * g_a and adv = d*adv + (1-d)*base'.
4. Normalize g_u to global L2 norm sqrt(N) (taken before masking).
5. Disruption Masking: keep g_u only where sign(g_u) == sign(retain_acc).
6. base = base' - unlearning_rate * g_u.

The whole update of steps 2 and 6 is written into ``param.grad`` (divided by ``learning_rate``) for
the trainer's plain SGD step to apply, so checkpoints, schedulers and callbacks work unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..distributed import token_mean_over_processes
from ..gradients import disruption_mask, ema_, global_norm, normalize
from ..losses import IGNORE_INDEX, LossFn, cross_entropy, get_loss
from ..modeling import lm_logits
from .base import UnlearningMethod, register_method

if TYPE_CHECKING:
    from ..trainer import UnlearnTrainer


@register_method
class MUDMAN(UnlearningMethod):
    name = "mudman"
    builds_update = True

    def __init__(self, args):
        super().__init__(args)
        self.unlearning_loss = get_loss(args.unlearning_loss)
        self.retain_acc: list[torch.Tensor] | None = None  # EMA of retain gradients (fp32), one per target weight
        self.adversary: list[torch.Tensor] | None = None  # the adversary's target weights (fp32); None before a fork
        self.loops_done = 0

    def compute_loss(self, trainer: UnlearnTrainer, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        forget = inputs["forget"]
        return self.unlearning_loss(lm_logits(model, forget), forget["labels"])

    def training_step(self, trainer: UnlearnTrainer, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        args = self.args
        # Forward passes go to the unwrapped model: gradients are averaged across processes below,
        # once per gradient, instead of by DDP hooks that expect exactly one backward per forward.
        model = trainer.accelerator.unwrap_model(model)
        base = [model.get_parameter(name) for name in self.target_names]
        if self.retain_acc is None:
            self.retain_acc = [torch.zeros_like(p, dtype=torch.float32) for p in base]

        # 1. Fork the adversary.
        if args.meta_learning and self.loops_done % args.fork_every_n_loops == 0:
            self.adversary = [p.detach().float().clone() for p in base]

        # 2. Retain gradient, its EMA, and the retain step (kept aside; applied with the final update).
        (retain_loss,), (retain_grad,) = self._losses_and_grads(
            trainer, model, inputs["retain"], base, base, [cross_entropy]
        )
        for acc, g in zip(self.retain_acc, retain_grad):
            ema_(acc, g.float(), args.retain_momentum)
        after_retain = [p.detach().float() - args.retaining_rate * acc for p, acc in zip(base, self.retain_acc)]

        # 3. One forward of the forget batch at the adversary; the adversary's and the unlearning gradients.
        attacked = self.adversary if args.meta_learning else after_retain
        if args.unlearning_loss == "neg_cross_entropy":  # g_u = -g_a exactly: one backward pass fewer
            (forget_loss,), (adversary_grad,) = self._losses_and_grads(
                trainer, model, inputs["forget"], base, attacked, [cross_entropy]
            )
            unlearning_loss, unlearning_grad = -forget_loss, [-g for g in adversary_grad]
        elif args.meta_learning:
            (forget_loss, unlearning_loss), (adversary_grad, unlearning_grad) = self._losses_and_grads(
                trainer, model, inputs["forget"], base, attacked, [cross_entropy, self.unlearning_loss]
            )
        else:  # no adversary to train: the forget cross-entropy is not needed
            (unlearning_loss,), (unlearning_grad,) = self._losses_and_grads(
                trainer, model, inputs["forget"], base, attacked, [self.unlearning_loss]
            )
            forget_loss = None
        if args.meta_learning:
            for adv, g, anchor in zip(self.adversary, adversary_grad, after_retain):
                adv.sub_(g.float(), alpha=args.adv_lr).mul_(args.adv_decay).add_(anchor, alpha=1 - args.adv_decay)

        # 4. Normalize, before masking, over all target weights together.
        unlearning_grad_norm = global_norm(unlearning_grad)
        if args.normalize_unlearning_grad:
            unlearning_grad = normalize(unlearning_grad, unlearning_grad_norm)

        # 5. Disruption Masking against the retain-gradient EMA.
        if args.disruption_masking:
            masks = [disruption_mask(g, acc) for g, acc in zip(unlearning_grad, self.retain_acc)]
            unlearning_grad = [g * m for g, m in zip(unlearning_grad, masks)]
            kept = sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)
        else:
            kept = 1.0

        # 6. The whole update, for the optimizer's SGD step: param -= learning_rate * grad.
        for p, acc, g in zip(base, self.retain_acc, unlearning_grad):
            update = args.retaining_rate * acc + args.unlearning_rate * g.float()
            p.grad = (update / args.learning_rate).to(p.dtype)

        self.loops_done += 1
        losses = {"retain_loss": retain_loss, "unlearning_loss": unlearning_loss}
        if forget_loss is not None:
            losses["adversary_forget_loss" if args.meta_learning else "forget_loss"] = forget_loss
        trainer.record_metrics(**losses, unlearning_grad_norm=unlearning_grad_norm, mask_kept_fraction=kept)
        return unlearning_loss

    def _losses_and_grads(
        self,
        trainer: UnlearnTrainer,
        model: nn.Module,
        batch: dict[str, torch.Tensor],
        base: Sequence[nn.Parameter],
        weights: Sequence[torch.Tensor],
        loss_fns: Sequence[LossFn],
    ) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """One forward of ``batch`` with the ``base`` target weights set to ``weights``; each loss and its gradient.

        Gradients are with respect to the target weights only (everything else is frozen, so no other
        weight gradient is ever computed). Losses and gradients are averaged over the target tokens of
        all processes, so any number of processes computes what one would on the global batch.
        """
        leaves = [w.detach().to(p.dtype).requires_grad_() for w, p in zip(weights, base)]
        with trainer.compute_loss_context_manager():
            logits = lm_logits(model, batch, dict(zip(self.target_names, leaves)))
            losses = [fn(logits, batch["labels"]) for fn in loss_fns]
        grads = [torch.autograd.grad(loss, leaves, retain_graph=i + 1 < len(losses)) for i, loss in enumerate(losses)]
        self.passes += 1 + len(losses)  # one forward, one backward per loss
        # One all-reduce for the losses and all gradients of this pass.
        num_tokens = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
        flat = [loss.detach() for loss in losses] + [g for grad in grads for g in grad]
        flat = token_mean_over_processes(flat, num_tokens, trainer.accelerator)
        values, flat_grads, n = flat[: len(losses)], flat[len(losses) :], len(leaves)
        return values, [flat_grads[i * n : (i + 1) * n] for i in range(len(losses))]

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "retain_acc": self.retain_acc,
            "adversary": self.adversary,
            "loops_done": self.loops_done,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.retain_acc, self.adversary, self.loops_done = state["retain_acc"], state["adversary"], state["loops_done"]
