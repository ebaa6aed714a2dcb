"""``UnlearnTrainer``: the HF ``Trainer`` loop, driving an unlearning method on forget/retain batches."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from datasets import Dataset
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback

from .config import UnlearnConfig
from .data.collator import LMCollator
from .data.pairing import RetainStream
from .data.processing import prepare_eval_datasets, prepare_lm_dataset
from .distributed import mean_over_processes
from .evaluation.evaluators import Evaluator, EvaluatorsMixin
from .methods import get_method_class
from .modeling import check_pad_token, lm_loss, load_causal_lm

if TYPE_CHECKING:
    from peft import PeftConfig

METHOD_STATE_NAME = "unlearning_state.pt"


class UnlearnTrainer(EvaluatorsMixin, Trainer):
    """Unlearns ``forget_dataset`` from a causal LM while preserving ``retain_dataset``.

    The forget set drives the usual dataloader (shuffling, sharding, resume); each step pairs its
    batch with an independently drawn retain batch (``RetainStream``) into
    ``{"forget": batch, "retain": batch}`` and hands it to the method named by ``args.method``.
    The method writes gradients (or, like MUDMAN, its complete update) into the trainable weights'
    ``.grad``; the Trainer's optimizer, scheduler, logging, callbacks and checkpointing do the rest.
    Only the method's target weights train: every other parameter is frozen. With ``peft_config``
    (a PEFT ``LoraConfig``, as in TRL's trainers) the model is wrapped and its adapter trains.

    Datasets hold text (``args.dataset_text_field``) or pre-tokenized ``input_ids``. Pass
    ``eval_dataset={"forget": ..., "retain": ...}`` to get ``eval_forget_loss`` and
    ``eval_retain_loss`` from ``evaluate()``, and ``evaluators={"wmdp": MCQEvaluator(...)}`` for
    accuracies (``eval_wmdp_accuracy``).
    """

    _tag_names = ["hf_unlearn", "unlearning"]

    def __init__(
        self,
        model: PreTrainedModel | str,
        args: UnlearnConfig | None = None,
        forget_dataset: Dataset | None = None,
        retain_dataset: Dataset | None = None,
        eval_dataset: Dataset | dict[str, Dataset] | None = None,
        processing_class: PreTrainedTokenizerBase | None = None,
        data_collator: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]] | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple[torch.optim.Optimizer | None, torch.optim.lr_scheduler.LambdaLR | None] = (None, None),
        evaluators: dict[str, Evaluator] | None = None,
        peft_config: PeftConfig | None = None,
    ):
        if args is None:
            args = UnlearnConfig(output_dir="unlearn_output")
        if not isinstance(args, UnlearnConfig):
            raise TypeError(f"args must be an UnlearnConfig, got {type(args).__name__}")
        if forget_dataset is None or retain_dataset is None:
            raise ValueError("UnlearnTrainer needs both forget_dataset and retain_dataset")
        model, processing_class = load_causal_lm(model, processing_class)
        pad_token_id = check_pad_token(processing_class)
        text = {"text_field": args.dataset_text_field, "max_length": args.max_length}
        forget = prepare_lm_dataset(forget_dataset, processing_class, name="forget", **text)
        retain = prepare_lm_dataset(retain_dataset, processing_class, name="retain", **text)
        eval_dataset = prepare_eval_datasets(eval_dataset, processing_class, **text)

        if peft_config is not None:  # train an adapter; the method's reference is the adapter disabled
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
        # The method picks and unfreezes its target weights before the Trainer builds the optimizer.
        self.method = get_method_class(args.method)(args)
        self.method.check_eval_dataset(eval_dataset)
        self.method.setup(model)
        model.config.use_cache = False

        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator or LMCollator(pad_token_id),
            train_dataset=forget,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            optimizers=optimizers,
        )
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            raise NotImplementedError(
                f"method {args.method!r} takes gradients with respect to full target weights (for masking, the "
                "adversary and cross-process averaging); FSDP and DeepSpeed shard them, which is not supported yet. "
                "Run with DDP (accelerate launch without fsdp/deepspeed)."
            )
        # The trainer computes its own mean loss: the model's loss kwargs must not rescale it.
        self.model_accepts_loss_kwargs = False
        self.evaluators = evaluators or {}
        for callback in self.method.callbacks(self):
            self.add_callback(callback)
        self.retain_stream = RetainStream(
            retain, self.data_collator, args.per_device_train_batch_size, args.seed, args.world_size, args.process_index
        )
        self._retain_draw = (-1, 0)  # (global step, micro-batches drawn at it)
        self._metrics: dict[str, list[float]] = defaultdict(list)

    def _next_retain_batch(self) -> dict[str, torch.Tensor]:
        step, drawn = self._retain_draw
        drawn = drawn + 1 if step == self.state.global_step else 0
        self._retain_draw = (self.state.global_step, drawn)
        return self.retain_stream.batch(self.state.global_step * self.args.gradient_accumulation_steps + drawn)

    def training_step(
        self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        model.train()
        batch = self._prepare_inputs({"forget": inputs, "retain": self._next_retain_batch()})
        return self.method.training_step(self, model, batch).detach().to(self.args.device)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, Any]]:
        """A paired batch: the method's loss. A plain LM batch (evaluation): mean cross-entropy."""
        if "forget" in inputs:
            loss, outputs = self.method.compute_loss(self, model, inputs), {}
        else:
            loss, logits = lm_loss(model, inputs)
            outputs = {"logits": logits}
        return (loss, outputs) if return_outputs else loss

    def target_parameters(self) -> dict[str, nn.Parameter]:
        """The weights the method trains, by name."""
        model = self.accelerator.unwrap_model(self.model)
        return {name: model.get_parameter(name) for name in self.method.target_names}

    def record_metrics(self, **values: torch.Tensor | float) -> None:
        """Average ``values`` across processes and keep them until the next training log, which shows their mean."""
        stacked = torch.stack([torch.as_tensor(v, dtype=torch.float32, device=self.args.device) for v in values.values()])
        (averaged,) = mean_over_processes([stacked], self.accelerator)
        for key, value in zip(values, averaged.tolist()):
            self._metrics[key].append(value)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log, not an evaluation one
            logs = {**logs, **{key: sum(vals) / len(vals) for key, vals in self._metrics.items()}}
            logs["forward_backward_passes"] = self.method.passes
            self._metrics.clear()
        super().log(logs, start_time)

    # The method's state (retain EMA, adversary, counters) travels with the optimizer's state, so
    # `resume_from_checkpoint` continues exactly where the run stopped; so does the state of callbacks
    # that have one (DisruptionBudgetCallback: its start and the last weights within budget, tensors
    # that the JSON trainer state could not hold).
    def _stateful_callbacks(self) -> dict[str, TrainerCallback]:
        return {type(cb).__name__: cb for cb in self.callback_handler.callbacks if hasattr(cb, "load_state_dict")}

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if self.args.should_save:
            callbacks = {name: cb.state_dict() for name, cb in self._stateful_callbacks().items()}
            torch.save({"method": self.method.state_dict(), "callbacks": callbacks}, os.path.join(output_dir, METHOD_STATE_NAME))

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        path = os.path.join(checkpoint, METHOD_STATE_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{checkpoint} has no {METHOD_STATE_NAME}, so the {self.args.method!r} state cannot be restored and "
                "resuming would not continue the same run; resume from a checkpoint written by UnlearnTrainer"
            )
        state = torch.load(path, map_location=self.args.device, weights_only=True)
        self.method.load_state_dict(state["method"])
        for name, callback in self._stateful_callbacks().items():
            if name in state["callbacks"]:
                callback.load_state_dict(state["callbacks"][name])
