"""Benchmark: a method's trajectory at given settings on a quality-benchmark scenario, before tuning it.

Where a method has no published settings, a search space "about a decade either side" needs a centre that is
neither a no-op nor beyond the disruption budget. This runs the quality benchmark's trial (default scale: its
tuning split, batches, pass budget, bf16 autocast) once per ``--settings`` and prints, at every evaluation,
the disruption (general-text loss above its start) and the forget metric. No attack, no tuning.

    python benchmarks/pilot.py --scenario code --method tar \\
        --settings unlearning_rate=1e-3,retain_representation_weight=1e-2 unlearning_rate=1e-3,retain_representation_weight=1e-5
    python benchmarks/pilot.py --scenario fictitious --method mudman --settings unlearning_rate=2e-4 unlearning_rate=2e-3

Writes ``pilot_<scenario>_<method>.json`` (with the machine and package versions) to ``--output_dir``
(default ``benchmarks/results/pilot/``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from hf_unlearn import get_method
from hf_unlearn.environment import environment
from hf_unlearn.evaluation.disruption import DisruptionBudget
from hf_unlearn.models import resolve_model_name_or_path
from hf_unlearn.pipeline import unlearn
from hf_unlearn.sweep import build_scenario, precision

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("quality", HERE / "quality.py")
quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quality)


def setting_value(text: str) -> Any:
    """16 -> int, 1e-3 -> float, anything else as YAML reads it (true, a word)."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def parse_settings(text: str) -> dict[str, Any]:
    """``name=value,name=value`` -> {name: value}."""
    try:
        return {name: setting_value(value) for name, value in (item.split("=") for item in text.split(","))}
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--settings takes name=value,name=value, got {text!r}") from error


class Trajectory(TrainerCallback):
    """Collects the evaluations: one row per step with every ``eval_*`` loss and accuracy (from the logs, where the
    evaluators' accuracies arrive too)."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, float]] = {}

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        metrics = {k: v for k, v in (logs or {}).items() if k.startswith("eval_") and k.endswith(("_loss", "_accuracy"))}
        if metrics:
            self.rows.setdefault(state.global_step, {}).update(metrics)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=["code", "facts", "fictitious"], required=True, help="fictitious: from its target (benchmarks/oracle.py)")
    parser.add_argument("--method", choices=sorted(quality.METHODS), required=True, help="a quality-benchmark method name")
    parser.add_argument("--settings", type=parse_settings, nargs="+", required=True, help="name=value,... per run, over the published ones")
    parser.add_argument("--output_dir", default=str(HERE / "results" / "pilot"))
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    quality_args = quality.parse_args(["--output_dir", args.output_dir])
    scale = quality.SCALES["default"]
    sweep_args = quality.sweep_arguments(quality_args, scale, args.method, args.scenario)
    budget = sweep_args.disruption_budget
    model_path = resolve_model_name_or_path(quality.model_path(quality_args, args.scenario))
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    data = quality.data_arguments(scale, "tuning", quality_args.seed, args.method)
    scenario = build_scenario(sweep_args, data, AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32), tokenizer)
    metric = scenario.best_metric
    published = {name: spec["published"] for name, spec in sweep_args.search_space.items() if "published" in spec}
    runs = []
    for settings in args.settings:
        trajectory = Trajectory()
        run = dict(
            output_dir=str(Path(tempfile.gettempdir()) / "hf_unlearn_pilot"), max_steps=scale["pass_budget"], max_passes=scale["pass_budget"],
            per_device_train_batch_size=scale["batch_size"], eval_strategy="steps", eval_steps=scale["unlearn_eval_steps"], eval_on_start=True,
            save_strategy="no", report_to="none", disruption_budget=None, disable_tqdm=True, seed=quality_args.seed, **precision(sweep_args),
        )  # fmt: skip
        # As a trial: its run settings, under the study's fixed ones, under the settings tried.
        config = get_method(quality.METHODS[args.method][0]).config(**{**run, **sweep_args.fixed, **published, **settings})
        unlearn(AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32), config, scenario, tokenizer, callbacks=[trajectory])
        start = trajectory.rows[0]["eval_retain_loss"]
        budget_rule = DisruptionBudget(budget, sweep_args.disruption_unit)
        rows = [{"step": step, "disruption": budget_rule.rise(start, row["eval_retain_loss"]), metric: row.get(metric, math.nan)}
                for step, row in sorted(trajectory.rows.items())]  # fmt: skip
        runs.append({"settings": {**published, **settings}, "trajectory": rows})
    print(f"{args.scenario} / {args.method}: disruption ({sweep_args.disruption_unit}, budget {budget}) and {metric} at every evaluation")
    print("| settings | step | disruption | " + metric + " |\n|---|---|---|---|")
    for run in runs:
        for row in run["trajectory"]:
            over = " (over budget)" if row["disruption"] > budget else ""
            print(f"| {json.dumps(run['settings'])} | {row['step']} | {row['disruption']:+.4f}{over} | {row[metric]:.4f} |")
    output = Path(args.output_dir) / f"pilot_{args.scenario}_{args.method}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"scenario": args.scenario, "method": args.method, "budget": budget, "unit": sweep_args.disruption_unit,
                                  "metric": metric, "runs": runs, "environment": environment()}, indent=2) + "\n")  # fmt: skip
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
