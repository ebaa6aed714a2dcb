"""Benchmark: how noisy the quality benchmark's metrics are at the evaluation sizes it uses.

Evaluates the untouched embedded SmolLM2-135M on the quality benchmark's held-out evaluation sets (default
scale, its seed) and prints, for each metric, the evaluation size and its standard error:

- ``forget_loss`` / ``retain_loss`` (code scenario; ``retain_loss`` is the disruption metric in both): the
  standard error of the mean over the evaluated chunks (each chunk's mean token loss; tokens within a
  chunk are not independent, so chunks are the unit);
- ``facts_accuracy`` (facts scenario): the binomial standard error sqrt(p(1-p)/n) over the n held-out facts,
  at the untouched model's p and at p = 0.5, the largest it can be.

A difference between two methods smaller than about twice the standard error is not a finding.
Writes ``metric_noise.json`` (with the machine and package versions) to ``--output_dir``.

    python benchmarks/metric_noise.py
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from pathlib import Path

import torch

from hf_unlearn.data import LMCollator
from hf_unlearn.environment import environment
from hf_unlearn.forward import lm_loss
from hf_unlearn.models import load_model

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("quality", HERE / "quality.py")
quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quality)


def chunk_losses(model: torch.nn.Module, dataset, tokenizer) -> list[float]:
    collate = LMCollator(tokenizer.pad_token_id)
    with torch.no_grad():
        return [lm_loss(model, collate([row]))[0].item() for row in dataset]


def mean_and_sem(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(variance / len(values))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    scale, state = quality.SCALES["default"], quality.parse_args([])
    seed = state.seed + 1000  # the held-out evaluations' seed
    _, model, tokenizer = load_model(state.model)
    model.eval()
    rows = []
    for scenario in ("code", "facts"):
        sweep_args = quality.sweep_arguments(state, scale, "mudman", scenario)
        data = quality.build_scenario(sweep_args, quality.data_arguments(scale, "test", seed), model, tokenizer)
        for name in (["forget", "retain"] if scenario == "code" else ["retain"]):
            mean, sem = mean_and_sem(chunk_losses(model, data.eval[name], tokenizer))
            rows.append({"scenario": scenario, "metric": f"{name}_loss", "n": len(data.eval[name]), "unit": "chunks", "value": mean, "sem": sem})
        if scenario == "facts":
            (evaluator,) = data.evaluators.values()
            accuracy, n = evaluator(model, tokenizer)["accuracy"], len(evaluator.dataset)
            rows.append({"scenario": scenario, "metric": "facts_accuracy", "n": n, "unit": "facts", "value": accuracy,
                         "sem": math.sqrt(accuracy * (1 - accuracy) / n), "sem_at_p_0.5": math.sqrt(0.25 / n)})  # fmt: skip
    print("| scenario | metric | n | untouched model | standard error | at p = 0.5 |\n|---|---|---|---|---|---|")
    for row in rows:
        worst = f"{row['sem_at_p_0.5']:.3f}" if "sem_at_p_0.5" in row else ""
        print(f"| {row['scenario']} | {row['metric']} | {row['n']} {row['unit']} | {row['value']:.4f} | {row['sem']:.4f} | {worst} |")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "metric_noise.json").write_text(json.dumps({"environment": environment(), "scale": scale, "rows": rows}, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
