"""Trainer callbacks for unlearning runs."""

from __future__ import annotations

from pathlib import Path

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from .evaluation.disruption import METRIC, DisruptionBudget


class DisruptionBudgetCallback(TrainerCallback):
    """Stop unlearning once a general-capability loss exceeds its starting value by ``budget`` (relative, or in
    nats with ``unit="nats"``; ``hf_unlearn.evaluation.disruption``).

    ``metric`` (default ``eval_retain_loss``) is read at every evaluation; the first evaluation
    (``eval_on_start``, or the first eval) is the start. While within budget, the trained weights
    are remembered; when an evaluation goes beyond, training stops, the model is saved to
    ``<output_dir>/first_beyond_budget``, and the weights go back to the last evaluation within
    budget, which is also saved, to ``<output_dir>/last_within_budget``. CIR's default budget is
    +0.1 % (``budget=0.001``). Under ``UnlearnTrainer`` its state (the start, the last weights within
    budget) is saved in every checkpoint, so a resumed run keeps measuring from the original start.
    """

    def __init__(self, budget: float, metric: str = f"eval_{METRIC}", unit: str = "relative"):
        self.budget, self.metric = DisruptionBudget(budget, unit), metric
        self.start: float | None = None
        self.within_budget: dict | None = None  # {"step", "value", "weights"}
        self.exceeded_at: dict | None = None  # {"step", "value"}

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, metrics=None, model=None, **kwargs):
        if metrics is None or self.metric not in metrics:
            return  # one of several eval datasets: the metric comes with another
        value = metrics[self.metric]
        if self.start is None:
            self.start = value
        if not self.budget.exceeded(self.start, value):
            trained = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
            self.within_budget = {"step": state.global_step, "value": value, "weights": trained}
            return
        self.exceeded_at = {"step": state.global_step, "value": value}
        control.should_training_stop = True
        if state.is_world_process_zero:
            model.save_pretrained(Path(args.output_dir) / "first_beyond_budget")
        if self.within_budget is not None:
            for name, param in model.named_parameters():
                if name in self.within_budget["weights"]:
                    param.data.copy_(self.within_budget["weights"][name])
            if state.is_world_process_zero:
                model.save_pretrained(Path(args.output_dir) / "last_within_budget")

    def state_dict(self) -> dict:
        return {"start": self.start, "within_budget": self.within_budget, "exceeded_at": self.exceeded_at}

    def load_state_dict(self, state: dict) -> None:
        self.start, self.within_budget, self.exceeded_at = state["start"], state["within_budget"], state["exceeded_at"]
