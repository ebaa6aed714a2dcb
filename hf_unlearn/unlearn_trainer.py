"""``UnlearnTrainer``: the HF ``Trainer`` loop, driving an unlearning method on forget/retain batches."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from datasets import Dataset
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback, TrainerState
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, TrainOutput
from transformers.utils import logging

from .callbacks import DisruptionBudgetCallback
from .causal_lm_trainer import CausalLMTrainer
from .components.procedures import StepContext
from .data.pairing import RetainStream
from .distributed import check_process_count, mean_over_processes
from .evaluation.disruption import METRIC, broke_the_model
from .evaluation.evaluators import Evaluator
from .evaluation.report import RobustnessReport
from .forward import lm_loss, weights_digest
from .gradients import global_norm
from .methods import MUDMANConfig, available_methods, get_method
from .model_card import (
    REPORT_NAME,
    UnlearningInfo,
    base_model_license,
    base_model_name,
    base_model_path,
    method_settings,
    model_card,
    saved_weights_digest,
)
from .models import with_lora_adapter
from .targets import model_depth
from .tracking import open_run_url
from .unlearn_config import UnlearnConfig

if TYPE_CHECKING:
    from peft import PeftConfig

METHOD_STATE_NAME = "unlearning_state.pt"
logger = logging.get_logger(__name__)


class UnlearningDivergedError(RuntimeError):
    """Unlearning produced a NaN/inf update or a broken model; training stopped and nothing more was saved."""


def method_state_name(process_index: int) -> str:
    """The method's checkpoint file of one process: every process saves its own (CIR's statistics differ per process)."""
    return METHOD_STATE_NAME if process_index == 0 else METHOD_STATE_NAME.replace(".pt", f"_rank{process_index}.pt")


def last_complete_checkpoint(output_dir: str, num_processes: int = 1) -> str | None:
    """The newest ``checkpoint-N`` of ``output_dir`` that was written completely, or None.

    The trainer state (``trainer_state.json``) is written last, after every process has saved its
    method state, so a checkpoint cut short by a kill lacks it (or holds a truncated one) and is
    skipped, with a warning, in favour of the previous one.
    """
    folders = [f for f in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*") if f.name.split("-")[-1].isdigit()]
    for folder in sorted(folders, key=lambda f: int(f.name.split("-")[-1]), reverse=True):
        try:
            json.loads((folder / TRAINER_STATE_NAME).read_text())
            complete = all((folder / method_state_name(rank)).is_file() for rank in range(num_processes))
        except (OSError, ValueError):
            complete = False
        if complete:
            return str(folder)
        if (folder / TRAINER_STATE_NAME).is_file() and not (folder / "optimizer.pt").exists() and not (folder / METHOD_STATE_NAME).exists():
            logger.warning(f"skipping {folder}: written with save_only_model=True, it holds the weights only and cannot be resumed")
        else:
            logger.warning(f"skipping {folder}: it was not written completely (interrupted while saving?)")
    return None


class UnlearnTrainer(CausalLMTrainer):
    """Unlearns ``forget_dataset`` from a causal LM while preserving ``retain_dataset``.

    The forget set drives the usual dataloader (shuffling, sharding, resume); each step pairs its
    batch with an independently drawn retain batch (``RetainStream``) into
    ``{"forget": batch, "retain": batch}`` and hands it to the update procedure of the method named
    by ``args.method`` (``hf_unlearn.registry``), which turns the method's objective into gradients
    (or, like MUDMAN's loop, its complete update) in the trainable weights' ``.grad``; the Trainer's
    optimizer, scheduler, logging, callbacks and checkpointing do the rest. Only the method's target
    weights train: every other parameter is frozen. With ``peft_config``
    (a PEFT ``LoraConfig``, as in TRL's trainers) the model is wrapped and its adapter trains.

    Datasets hold text (``args.dataset_text_field``) or pre-tokenized ``input_ids``. Pass
    ``eval_dataset={"forget": ..., "retain": ...}`` to get ``eval_forget_loss`` and
    ``eval_retain_loss`` from ``evaluate()``, and ``evaluators={"wmdp": MCQEvaluator(...)}`` for
    accuracies (``eval_wmdp_accuracy``). ``data_sources`` (``{"forget": name, "retain": name}``) names the data in the
    model card, and ``data_arguments`` (the arguments that built it) go to ``unlearning_info.json``, so that
    ``hf-unlearn evaluate`` attacks with the same data.
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
        data_sources: dict[str, str] | None = None,
        data_arguments: dict[str, Any] | None = None,
    ):
        if args is None:
            args = MUDMANConfig(output_dir="unlearn_output")
        if not isinstance(args, UnlearnConfig):
            raise TypeError(f"args must be an UnlearnConfig, got {type(args).__name__}")
        if args.method is None:
            raise ValueError(
                f"args is the bare UnlearnConfig, which names no method: build a method's config, e.g. hf_unlearn.MUDMANConfig(...) "
                f"(methods: {', '.join(available_methods())})"
            )
        if forget_dataset is None or retain_dataset is None:
            raise ValueError("UnlearnTrainer needs both forget_dataset and retain_dataset")
        check_process_count(args.world_size)
        self.data_sources = data_sources or {}  # {"forget": source name, "retain": ...}, for the model card
        self.data_arguments = data_arguments or {}  # the ScenarioArguments the data was built from, for `hf-unlearn evaluate`
        spec = get_method(args.method)
        spec.check_args(args)
        self.objective = spec.objective(args)
        self.procedure = spec.procedure(args, self.objective)
        self.peft_config = peft_config
        super().__init__(model, args, forget_dataset, "forget", eval_dataset, processing_class, data_collator, callbacks, optimizers, evaluators)
        retain = self.prepare_text(retain_dataset, "retain")
        if args.disruption_budget is not None:
            self.add_callback(DisruptionBudgetCallback(args.disruption_budget, unit=args.disruption_unit))
        self.retain_stream = RetainStream(
            retain, self.data_collator, args.retain_batch_size or args.per_device_train_batch_size, args.seed, args.world_size,
            args.process_index,
        )
        self._retain_draw = (-1, 0)  # (global step, micro-batches drawn at it)
        self._metrics: dict[str, list[float]] = defaultdict(list)
        if args.max_retain_loss_ratio > 0:
            self.add_callback(BrokenModelGuard(self))
        if args.max_passes is not None:
            self.add_callback(PassBudget(self))
        self.add_callback(CheckpointsWhenDue())

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        """``Trainer.train``; ``resume_from_checkpoint=True`` resumes from the newest *complete* checkpoint."""
        if isinstance(resume_from_checkpoint, str) and resume_from_checkpoint.lower() in ("true", "false"):
            # The command line gives a string: --resume_from_checkpoint True is the flag, not a folder named "True".
            resume_from_checkpoint = resume_from_checkpoint.lower() == "true"
        if resume_from_checkpoint is False:
            resume_from_checkpoint = None
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir, self.args.world_size)
            if resume_from_checkpoint is None:
                raise ValueError(f"resume_from_checkpoint=True, but {self.args.output_dir} holds no complete checkpoint to resume from")
        if resume_from_checkpoint is not None:
            self.check_same_run(resume_from_checkpoint)
        if resume_from_checkpoint is not None and self.args.max_steps > 0:
            state = TrainerState.load_from_json(os.path.join(resume_from_checkpoint, TRAINER_STATE_NAME))
            if state.global_step >= self.args.max_steps:
                # The run is complete. transformers would take one step more when max_steps ends mid-epoch, which
                # MUDMAN's and CIR's constant-size updates make a full extra update: load the checkpoint instead.
                logger.warning(f"{resume_from_checkpoint} is at max_steps={self.args.max_steps}: loaded, nothing left to train")
                self._load_from_checkpoint(resume_from_checkpoint)
                self._load_method_state(resume_from_checkpoint)
                self.state = state
                losses = [entry["train_loss"] for entry in state.log_history if "train_loss" in entry]
                return TrainOutput(state.global_step, losses[-1] if losses else float("nan"), {})
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def run_identity(self) -> dict[str, Any]:
        """What makes a checkpoint this run's: the method and its settings (how long it runs aside), the model, the data."""
        settings = {k: v for k, v in self.method_settings().items() if k not in ("max_steps", "num_train_epochs", "max_passes")}
        identity = {"method": self.args.method, "settings": settings, "base_model": self.base_model,
                    "forget_data": self.train_dataset._fingerprint, "retain_data": self.retain_stream.dataset._fingerprint}  # fmt: skip
        return json.loads(json.dumps(identity, default=str))

    def method_settings(self) -> dict[str, Any]:
        """The method's settings that differ from its config's defaults, and those derived from the model (layers left
        unset): what the run used, for the model card and the checkpoints' run identity."""
        return {**method_settings(self.args), **self.objective.derived}

    def check_same_run(self, checkpoint: str) -> None:
        """Refuse a checkpoint of another run (another method, settings, model or data): continuing it would end on
        weights that are neither run's."""
        path = os.path.join(checkpoint, method_state_name(self.args.process_index))
        saved = torch.load(path, map_location="cpu", weights_only=True).get("run") if os.path.isfile(path) else None
        if saved is None:
            return  # no method state: _load_optimizer_and_scheduler refuses it, naming the file
        ours = self.run_identity()
        changed = [f"{key}: {saved.get(key)!r} -> {ours.get(key)!r}" for key in sorted(saved.keys() | ours.keys()) if saved.get(key) != ours.get(key)]
        if changed:
            raise ValueError(
                f"{checkpoint} was written by another run ({'; '.join(changed)}): resuming it would not continue this run. "
                "Resume with that run's settings and data, or train from the start in a new output_dir"
            )

    def final_metrics(self) -> dict[str, float]:
        """The evaluation of the trained weights: the last step's, when training evaluated them (transformers
        evaluates the last step under a step strategy) and kept them, otherwise a new ``evaluate()``."""
        budget = next((cb for cb in self.callback_handler.callbacks if isinstance(cb, DisruptionBudgetCallback)), None)
        restored = budget is not None and budget.exceeded_at is not None  # weights of an earlier evaluation
        last = next((entry for entry in reversed(self.state.log_history) if f"eval_{METRIC}" in entry or "eval_loss" in entry), None)
        if last is not None and last.get("step") == self.state.global_step and not restored:
            return {k: v for k, v in last.items() if k.startswith("eval_") or k == "epoch"}
        return self.evaluate()

    # --- what was done, for the model card -------------------------------------------------------------

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """``Trainer.save_model``, and, when called by the user (not for a checkpoint), the model card and
        ``unlearning_info.json`` beside the weights: the folder is then complete for ``hf-unlearn evaluate``."""
        super().save_model(output_dir, _internal_call)
        if not _internal_call:
            self.write_model_card(output_dir or self.args.output_dir)

    def create_model_card(self, model_name: str | None = None, **kwargs: Any) -> None:
        """Write the unlearning model card (``README.md``) and ``unlearning_info.json`` into ``output_dir``
        (``save_model`` and ``push_to_hub`` call it; call it again after evaluating to update the disruption).

        The card (``hf_unlearn.model_card.model_card``) says what was forgotten (``data_sources`` names it),
        with which method and settings, the disruption measured, and the robustness table when
        ``robustness_report.json`` is in ``output_dir`` (``hf-unlearn evaluate`` puts it there) and measured these
        weights; a report of other weights (a run before this one, in the same folder) is removed.
        """
        self.write_model_card(self.args.output_dir, model_name)

    def write_model_card(self, output_dir: str | Path, model_name: str | None = None) -> None:
        """``create_model_card`` into ``output_dir``."""
        weights = weights_digest(self.accelerator.unwrap_model(self.model)).hexdigest()  # every process: FSDP gathers
        if not self.is_world_process_zero():
            return
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        info = dataclasses.replace(self.unlearning_info(), weights_sha256=saved_weights_digest(output_dir))
        info.save(output_dir)
        report = output_dir / f"{REPORT_NAME}.json"
        report = RobustnessReport.load(report) if report.is_file() else None
        if report is not None and report.details.get("model_weights") != weights:
            if self.peft_config is None:
                # Written for the weights this run replaced: kept, it would be pushed beside a model it does not describe.
                for stale in output_dir.glob(f"{REPORT_NAME}.*"):
                    stale.unlink()
                logger.warning(f"removed {output_dir / REPORT_NAME}.* (it measured the weights this run replaced); run hf-unlearn evaluate again")
            else:  # an adapter: evaluate measured the merged weights, which this digest cannot be compared with
                logger.warning(f"{output_dir / REPORT_NAME}.json cannot be checked against an adapter: left out of the card (hf-unlearn evaluate puts it back)")
            report = None
        model_card(info, report, self.args.hub_model_id or model_name).save(output_dir / "README.md")

    def unlearning_info(self) -> UnlearningInfo:
        def described(part: str, dataset) -> dict:
            tokens = sum(len(ids) for ids in dataset["input_ids"])
            return {"source": self.data_sources.get(part, "(a dataset given to UnlearnTrainer)"), "examples": len(dataset), "tokens": tokens}

        batch = self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
        trained = {"trained_examples": examples_drawn(self.state.global_step, batch, len(self.train_dataset))}
        if self.args.include_num_input_tokens_seen != "no":
            trained["trained_tokens"] = int(self.state.num_input_tokens_seen)

        evaluations = [entry[f"eval_{METRIC}"] for entry in self.state.log_history if f"eval_{METRIC}" in entry]
        disruption = {"retain_loss_before": evaluations[0], "retain_loss_after": evaluations[-1]} if len(evaluations) > 1 else {}
        budget = next((cb for cb in self.callback_handler.callbacks if isinstance(cb, DisruptionBudgetCallback)), None)
        if disruption and budget is not None and budget.exceeded_at is not None and budget.within_budget is not None:
            disruption["retain_loss_after"] = budget.within_budget["value"]  # the weights kept, not the evaluation beyond the budget
        return UnlearningInfo(
            base_model=self.base_model, method=self.args.method, settings=self.method_settings(),
            forget={**described("forget", self.train_dataset), **trained}, retain=described("retain", self.retain_stream.dataset),
            disruption=disruption, data=self.data_arguments, adapter=self.peft_config is not None,
            base_model_path=self.base_model_path, license=base_model_license(self.base_model_path), wandb_url=open_run_url(),
            disruption_budget=None if budget is None else str(budget.budget),
        )  # fmt: skip

    def prepare_model(
        self, model: nn.Module, args: UnlearnConfig, processing_class: PreTrainedTokenizerBase, eval_dataset: Any
    ) -> nn.Module:
        self.base_model, self.base_model_path = base_model_name(model), base_model_path(model)
        check_target_modules_apply(args, adapter=self.peft_config is not None or hasattr(model, "peft_config"))
        if self.peft_config is not None:  # train an adapter; the method's reference is the adapter disabled
            model = with_lora_adapter(model, self.peft_config)
        if args.disruption_budget is not None and not (isinstance(eval_dataset, dict) and "retain" in eval_dataset):
            raise ValueError(
                'disruption_budget is checked on eval_retain_loss: pass eval_dataset={"retain": ..., ...} (held-out general '
                "text), or set disruption_budget=None"
            )
        self.procedure.setup(model, processing_class)  # fits the layer settings, picks and unfreezes the target weights
        if self.objective.derived and args.process_index == 0:  # once per run; unlearning_info.json records them too
            derived = ", ".join(f"{name}={value}" for name, value in self.objective.derived.items())
            logger.warning(f"{args.method}: {derived}, derived from the model's depth ({model_depth(model)} decoder layers)")
        return model

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
        loss, metrics = self.procedure.training_step(self.step_context(), model, batch)
        self.record_metrics(**metrics)
        loss = loss.detach().to(self.args.device)
        # Every process holds the same averaged update, so every process stops here together.
        grads = [p.grad for p in self.target_parameters().values() if p.grad is not None]
        if not math.isfinite(loss.item()) or (grads and not torch.isfinite(global_norm(grads))):
            raise UnlearningDivergedError(
                f"step {self.state.global_step}: the {self.args.method!r} update is NaN/inf (loss {loss.item()}); "
                "training stopped before applying it and nothing more is saved. Lower the method's rates "
                "(unlearning_rate, learning_rate, step_norm, ...)."
            )
        return loss

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, Any]]:
        """A paired batch: the method's loss. A plain LM batch (evaluation): mean cross-entropy."""
        if "forget" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss = self.procedure.compute_loss(self.step_context(), model, inputs)
        return (loss, {}) if return_outputs else loss

    def step_context(self) -> StepContext:
        """What the procedure needs of this loop for the current step (it never sees the trainer itself)."""
        return StepContext(
            accelerator=self.accelerator, global_step=self.state.global_step, max_steps=self.state.max_steps,
            epoch=self.state.epoch or 0.0, gradient_accumulation_steps=getattr(self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps),
            device=self.args.device, autocast=self.compute_loss_context_manager,
        )  # fmt: skip

    def target_parameters(self) -> dict[str, nn.Parameter]:
        """The weights the method trains, by name."""
        model = self.accelerator.unwrap_model(self.model)
        return {name: model.get_parameter(name) for name in self.procedure.target_names}

    def record_metrics(self, **values: torch.Tensor | float) -> None:
        """Average ``values`` across processes and keep them until the next training log, which shows their mean."""
        stacked = torch.stack([torch.as_tensor(v, dtype=torch.float32, device=self.args.device) for v in values.values()])
        (averaged,) = mean_over_processes([stacked], self.accelerator)
        for key, value in zip(values, averaged.tolist()):
            self._metrics[key].append(value)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log, not an evaluation one
            logs = {**logs, **{key: sum(vals) / len(vals) for key, vals in self._metrics.items()}}
            logs["forward_backward_passes"] = self.procedure.passes
            self._metrics.clear()
        super().log(logs, start_time)

    # The procedure's state (retain momentum, adversary, counters) travels with the optimizer's state, so
    # `resume_from_checkpoint` continues exactly where the run stopped; so does the state of callbacks
    # that have one (DisruptionBudgetCallback: its start and the last weights within budget, tensors
    # that the JSON trainer state could not hold).
    def _stateful_callbacks(self) -> dict[str, TrainerCallback]:
        return {type(cb).__name__: cb for cb in self.callback_handler.callbacks if hasattr(cb, "load_state_dict")}

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        os.makedirs(output_dir, exist_ok=True)
        callbacks = {name: cb.state_dict() for name, cb in self._stateful_callbacks().items()}
        state = {"method": self.procedure.state_dict(), "callbacks": callbacks, "run": self.run_identity()}
        torch.save(state, os.path.join(output_dir, method_state_name(self.args.process_index)))
        # The trainer state, written after this by the main process, marks the checkpoint complete:
        # it must not exist before every process has saved its part.
        self.accelerator.wait_for_everyone()

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            self._load_method_state(checkpoint)

    def _load_method_state(self, checkpoint: str) -> None:
        path = os.path.join(checkpoint, method_state_name(self.args.process_index))
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{checkpoint} has no {os.path.basename(path)}, so the {self.args.method!r} state of process "
                f"{self.args.process_index} cannot be restored and resuming would not continue the same run; resume from a "
                "checkpoint written by UnlearnTrainer (not with save_only_model=True, which keeps the weights only), with as "
                "many processes as the run that wrote it"
            )
        # Tensors come back where they were saved from (CIR's statistics stay on the CPU), on this process's device.
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.procedure.load_state_dict(state["method"], self.args.device)
        for name, callback in self._stateful_callbacks().items():
            if name in state["callbacks"]:
                callback.load_state_dict(state["callbacks"][name])


def examples_drawn(steps: int, batch_size: int, num_examples: int) -> int:
    """Forget examples the training loop drew in ``steps`` steps of ``batch_size`` (every process, every accumulated
    micro-batch) from a dataset of ``num_examples``, repeats counted: each epoch takes every example once and ends
    with a partial batch."""
    steps_per_epoch = math.ceil(num_examples / batch_size)
    epochs, steps_into_epoch = divmod(steps, steps_per_epoch)
    return epochs * num_examples + min(steps_into_epoch * batch_size, num_examples)


def check_target_modules_apply(args: UnlearnConfig, adapter: bool) -> None:
    """Refuse ``target_modules`` set for an adapter run: the adapter trains its own targets, so the setting would be ignored."""
    spec = type(args).__dataclass_fields__["target_modules"]
    default = spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default
    if adapter and list(args.target_modules) != list(default):
        raise ValueError(
            f"target_modules={args.target_modules!r} has no effect on a LoRA adapter, which trains the modules it wraps: set "
            "them in the adapter's config instead (LoraConfig(target_modules=...), or --lora_target_modules with --use_peft)"
        )


class BrokenModelGuard(TrainerCallback):
    """Stops unlearning that destroyed the model, before the model is saved.

    The cross-entropy on a fixed retain batch is measured before unlearning and again before every
    checkpoint and at the end; above ``max_retain_loss_ratio`` times its start (or NaN/inf), the run
    raises ``UnlearningDivergedError``: the rates were far too high. Its start is kept in checkpoints.
    """

    def __init__(self, trainer: UnlearnTrainer):
        self.trainer = trainer
        self.start: float | None = None

    @torch.no_grad()
    def probe(self) -> float:
        trainer = self.trainer
        model = trainer.accelerator.unwrap_model(trainer.model)
        batch = trainer._prepare_inputs(trainer.retain_stream.batch(0))
        was_training = model.training
        model.eval()
        (loss,) = mean_over_processes([lm_loss(model, batch)[0].float()], trainer.accelerator)
        model.train(was_training)
        return loss.item()

    def on_train_begin(self, args, state, control, **kwargs):
        if self.start is None:  # a resumed run keeps the original start
            self.start = self.probe()

    def on_step_end(self, args, state, control, **kwargs):
        if not (control.should_save or control.should_training_stop or state.global_step >= state.max_steps):
            return
        value = self.probe()
        if broke_the_model(self.start, value, args.max_retain_loss_ratio):
            raise UnlearningDivergedError(
                f"step {state.global_step}: the retain loss is {value:.4g}, {value / self.start:.3g}x its value before "
                f"unlearning ({self.start:.4g}); the model is broken, so training stopped and it is not saved. Lower the "
                f"method's rates, or raise max_retain_loss_ratio (now {args.max_retain_loss_ratio}) if this was intended."
            )

    def state_dict(self) -> dict:
        return {"start": self.start}

    def load_state_dict(self, state: dict) -> None:
        self.start = state["start"]


class CheckpointsWhenDue(TrainerCallback):
    """Checkpoints at the save strategy's steps only. transformers also saves one at the last step, beside the final
    model that ``save_model`` writes: for SmolLM2-135M 0.7 GB that nothing can resume (the run is over). The size of
    the first checkpoint is logged, so that a user sees what ``save_total_limit`` keeps."""

    def __init__(self):
        self.size_logged = False

    def on_step_end(self, args, state, control, **kwargs):
        due = args.save_strategy == "steps" and state.save_steps > 0 and state.global_step % state.save_steps == 0
        if state.global_step >= state.max_steps and not due and args.save_strategy == "steps":
            control.should_save = False

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if self.size_logged or not state.is_world_process_zero or not folder.is_dir():
            return
        self.size_logged = True
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        limit = f"save_total_limit={args.save_total_limit} keeps at most that many" if args.save_total_limit else "no save_total_limit: all are kept"
        logger.warning(f"{folder}: {size / 1e9:.2f} GB (weights, optimizer and method state) per checkpoint; {limit}")


class PassBudget(TrainerCallback):
    """Stops unlearning once the method has used ``max_passes`` forward+backward passes, evaluating the final model."""

    def __init__(self, trainer: UnlearnTrainer):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        if self.trainer.procedure.passes >= args.max_passes:
            control.should_training_stop = True
            control.should_evaluate = args.eval_strategy != "no"
