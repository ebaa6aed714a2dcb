"""``CausalLMTrainer``: what ``UnlearnTrainer`` and ``RelearnAttackTrainer`` share.

A causal LM and its tokenizer (loaded by name when given one), training and evaluation data as text
or tokens with the same checks, right-padding collation, ``{"forget": ..., "retain": ...}``
evaluation sets, evaluators that add accuracies to ``evaluate()``, and the mean cross-entropy as
the evaluation loss.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import torch
from datasets import Dataset
from torch import nn
from transformers import (
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.utils import logging

from .data.collator import LMCollator
from .data.processing import prepare_eval_datasets, prepare_lm_dataset
from .environment import cpu_has_bf16_units
from .evaluation.evaluators import Evaluator
from .forward import lm_loss, lm_outputs
from .losses import token_loss_sums
from .models import check_pad_token, load_causal_lm

Collator = Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]
logger = logging.get_logger(__name__)


def check_writable(output_dir: str) -> None:
    """Find an output folder that cannot be written before training, not at the final save (which, with
    ``save_strategy="no"``, would lose the whole run)."""
    try:
        os.makedirs(output_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir):
            pass
    except OSError as error:
        raise PermissionError(f"output_dir={output_dir!r} cannot be written ({error}): give a writable folder") from error


def check_fits_positions(model: nn.Module, datasets: dict[str, Dataset | None]) -> None:
    """Refuse sequences longer than the model's positions: RoPE models train on them silently, others crash deep in torch."""
    positions = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    for name, dataset in datasets.items():
        longest = max(map(len, dataset["input_ids"]), default=0) if dataset is not None else 0
        if positions and longest > positions:
            raise ValueError(
                f"the {name} dataset has sequences of {longest} tokens, more than the model's {positions} positions: set max_length "
                f"(or the data's chunk_length) to at most {positions}"
            )


def check_trained_precision(model: nn.Module) -> None:
    """Refuse to train half-precision weights in place: an update below half a bf16 step of the weight rounds away
    (MUDMAN changed 8 % of gate_proj's elements in 5 steps, fp32: 100 %; an attack recovered 0.045 nats, not 0.062)."""
    half = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters() if p.requires_grad and p.dtype in (torch.bfloat16, torch.float16)})
    if half:
        raise ValueError(
            f"the trained weights are {half[0]}, so updates smaller than their rounding step are lost. Load the model in float32 "
            "(--dtype float32) and train under bf16 autocast (--bf16) for speed, or train a LoRA adapter (--use_peft; PEFT keeps "
            "its weights in float32)"
        )


def warn_if_bf16_is_emulated(args: TrainingArguments) -> bool:
    """Say so when bf16 autocast will run on a CPU without bf16 units, where torch emulates it (13x slower than float32
    on an AVX2-only AMD EPYC); True when it warned."""
    emulated = args.bf16 and args.device.type == "cpu" and not cpu_has_bf16_units()
    if emulated:
        logger.warning("bf16=True on a CPU without bf16 units (AVX512-BF16 or AMX): torch emulates bf16 there, about 13x slower "
                       "than float32 on an AVX2-only AMD EPYC. Leave --bf16 out on this machine")  # fmt: skip
    return emulated


class CausalLMTrainer(Trainer):
    """A ``Trainer`` on causal-LM data; subclasses choose what trains in ``prepare_model``.

    ``evaluators`` ({name: Evaluator}) run inside ``evaluate()``: their metrics are logged as
    ``eval_<name>_<metric>`` (``eval_facts_accuracy``) beside the eval losses, so every ``report_to``
    integration, the attack curve and ``metric_for_best_model`` see them.
    """

    def __init__(
        self,
        model: PreTrainedModel | str,
        args: TrainingArguments,
        train_dataset: Dataset,
        train_name: str,
        eval_dataset: Dataset | dict[str, Dataset] | None,
        processing_class: PreTrainedTokenizerBase | None,
        data_collator: Collator | None,
        callbacks: list[TrainerCallback] | None,
        optimizers: tuple,
        evaluators: dict[str, Evaluator] | None,
    ):
        check_writable(args.output_dir)
        model, processing_class = load_causal_lm(model, processing_class)
        text = {"text_field": args.dataset_text_field, "max_length": args.max_length}
        self.prepare_text = lambda dataset, name: prepare_lm_dataset(dataset, processing_class, name=name, **text)
        train_dataset = self.prepare_text(train_dataset, train_name)
        eval_dataset = prepare_eval_datasets(eval_dataset, processing_class, **text)
        check_fits_positions(model, {train_name: train_dataset, **(eval_dataset if isinstance(eval_dataset, dict) else {"eval": eval_dataset})})
        # What trains is fixed (and unfrozen) before the Trainer builds the optimizer; seeded first, so that a
        # freshly initialised adapter (PEFT) is the same in every run.
        set_seed(args.seed)
        model = self.prepare_model(model, args, processing_class, eval_dataset)
        check_trained_precision(model)
        if args.batch_eval_metrics or not args.eval_do_concat_batches:
            raise ValueError("batch_eval_metrics=True and eval_do_concat_batches=False are not supported: the evaluation loss is "
                             "the token mean over the whole split (see prediction_step); leave both at their defaults")  # fmt: skip
        model.config.use_cache = False
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator or LMCollator(check_pad_token(processing_class)),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            optimizers=optimizers,
        )
        check_sharding(self)
        warn_if_bf16_is_emulated(self.args)
        # The trainers compute their own mean loss: the model's loss kwargs must not rescale it.
        self.model_accepts_loss_kwargs = False
        self.compute_metrics = token_mean_loss  # with prediction_step: exact evaluation losses
        self.evaluators = evaluators or {}

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """``Trainer.save_model``; under FSDP2 with sharded state dicts, the model is gathered whole (on the CPU, one
        tensor at a time) and the main process writes it as an ordinary safetensors model. Checkpoints keep the
        shards each process writes, resumed as they were."""
        sharded = self.is_fsdp_enabled and "FULL_STATE_DICT" not in str(self.accelerator.state.fsdp_plugin.state_dict_type)
        if _internal_call or not sharded:
            return super().save_model(output_dir, _internal_call)
        state_dict = self.accelerator.get_state_dict(self.model)  # every process takes part; the main one gets it
        if self.args.should_save:
            self._save(output_dir, state_dict=state_dict)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        # training_args.bin pickles the whole TrainingArguments: a --hub_token given on the command line
        # would be written next to the weights (and pushed with them). It is kept out of it.
        token, self.args.hub_token = self.args.hub_token, None
        try:
            super()._save(output_dir, state_dict)
        finally:
            self.args.hub_token = token

    def prepare_model(
        self, model: nn.Module, args: TrainingArguments, processing_class: PreTrainedTokenizerBase, eval_dataset: Any
    ) -> nn.Module:
        """The model to train (possibly wrapped, e.g. by PEFT), with only the trained parameters requiring grad."""
        return model

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, Any]]:
        """Mean next-token cross-entropy, padding excluded."""
        loss, logits = lm_loss(model, inputs)
        return (loss, {"logits": logits}) if return_outputs else loss

    def prediction_step(
        self, model: nn.Module, inputs: dict[str, Any], prediction_loss_only: bool, ignore_keys: list[str] | None = None
    ) -> tuple[None, torch.Tensor, torch.Tensor]:
        """Each sequence's summed token loss and token count, as (predictions, labels) for ``token_mean_loss``.

        The Trainer's own evaluation loss is a mean of batch means, and under several processes its
        batches differ: gathered per sequence (``gather_for_metrics`` drops the duplicates that even out
        the processes' shares), the loss is the split's token mean with any batch size or process count.
        """
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            sums, counts = token_loss_sums(lm_outputs(model, inputs).logits, inputs["labels"])
        return None, sums, counts

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        metrics = {}
        if eval_dataset is not None or self.eval_dataset is not None:
            metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if eval_dataset is None and self.evaluators:  # the top-level call, not one per eval dataset
            model = self.accelerator.unwrap_model(self.model)
            extra = {
                f"{metric_key_prefix}_{name}_{key}": value
                for name, evaluator in self.evaluators.items()
                for key, value in evaluator(model, self.processing_class).items()
            }
            self.log(extra)
            metrics.update(extra)
        return metrics


FSDP2_COMMAND = "accelerate launch --config_file hf_unlearn/configs/accelerate/fsdp2.yaml recipes/unlearn.py ..."


def check_sharding(trainer: Trainer) -> None:
    """Refuse DeepSpeed and FSDP1 (FSDP2 is the supported sharding), and FSDP asked for but not engaged.

    accelerate engages FSDP only on GPU-like devices: on CPU processes (``ACCELERATE_USE_CPU``) it
    silently runs DDP instead, every process holding the whole model, which a run meant to fit by
    sharding must not believe it is doing.
    """
    if trainer.is_deepspeed_enabled:
        raise NotImplementedError(f"DeepSpeed is not supported: shard the model with FSDP2 instead ({FSDP2_COMMAND}; docs/design.md §8)")
    asked = bool(trainer.args.fsdp) or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if asked and not trainer.is_fsdp_enabled:
        raise ValueError(
            f"FSDP was asked for, but accelerate did not engage it on {trainer.args.device.type} processes (it shards on GPUs "
            "only): each process would hold the whole model. Run on GPUs, or drop --use_fsdp / fsdp to run DDP knowingly"
        )
    if trainer.is_fsdp_enabled and trainer.accelerator.state.fsdp_plugin.fsdp_version != 2:
        raise NotImplementedError(f"FSDP1 is not supported: set fsdp_version: 2 ({FSDP2_COMMAND})")


def token_mean_loss(prediction: EvalPrediction) -> dict[str, float]:
    """The evaluation loss: every sequence's summed token loss over every token counted (see ``prediction_step``)."""
    return {"loss": float(prediction.predictions.sum() / max(int(prediction.label_ids.sum()), 1))}
