"""Benchmark: the attacks that train nothing (int8 / int4 weights, attack-split text in context, prompt
templates) on the untouched model, MUDMAN, GradDiff, NPO and CIR, in both scenarios of the quality benchmark.

Each model is made as the quality benchmark's held-out evaluation makes it (``benchmarks/quality.py``: its
held-out data, its pass budget, a fresh seed, fp32), at the best settings of that benchmark's study of the method
(``benchmarks/results/quality/<scenario>/<method>/sweep/summary.json``; the table says how many distinct settings
it had tried; a study that grows and finds other settings makes the next run evaluate again), otherwise at the
method's published settings (the first trial of its tuning). Then the ``standard`` suite's four attacks that
train nothing run on it; the table gives each attack's best variant and the attacker's best over the four.

Resumable: one ``evaluation.json`` per model (and each attack's result beside it) under
``benchmarks/results/no_training_attacks/``, reused while the model's settings (tuned or published) stay the
same; it does not see the scale or package versions (``quality.py``'s state does): delete the folder after
changing those.

    nice python benchmarks/no_training_attacks.py                       # both scenarios, five models
    nice python benchmarks/no_training_attacks.py --scenarios facts --threads 1
    python benchmarks/no_training_attacks.py --report                   # the table from the state, no compute
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import optuna
import torch

from hf_unlearn.attacks import ATTACK_KINDS, PRESETS, RelearnAttackConfig
from hf_unlearn.environment import environment

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("quality", HERE / "quality.py")
quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quality)

ATTACKS = [name for name, attack in PRESETS["standard"].items() if not ATTACK_KINDS[attack.get("kind", RelearnAttackConfig.kind)].trains]
MODELS = ["no_unlearning", "mudman", "graddiff", "npo", "cir"]
OUTPUT = HERE / "results" / "no_training_attacks"


def settings_for(scenario: str, name: str, scale: dict) -> tuple[dict, str]:
    """The quality benchmark's best settings once its study has a finished trial (a study still short of the scale's
    trials is re-read on the next run: other settings, another evaluation), else the published ones."""
    summary = quality.RESULTS / scenario / name / "sweep" / "summary.json"
    if summary.is_file() and (summary.parent / "study.db").is_file() and "best_params" in (tuned := json.loads(summary.read_text())):
        sweep_args = quality.sweep_arguments(quality.parse_args([]), scale, name, scenario)
        study = optuna.load_study(study_name=sweep_args.study_name, storage=sweep_args.storage)
        return tuned["best_params"], f"tuned ({quality.distinct_finished(study)} distinct settings of {scale['trials']})"
    space = quality.search_space(name, scenario)
    return {field: spec["published"] for field, spec in space.items() if "published" in spec}, "published"


def run(args: argparse.Namespace) -> None:
    scale = quality.SCALES["default"]
    state = quality.parse_args(["--output_dir", str(args.output_dir)])
    for scenario in args.scenarios:
        for name in args.methods:
            settings, source = settings_for(scenario, name, scale) if name != "no_unlearning" else ({}, "")
            path = quality.evaluation_path(state, scenario, name)
            if path.is_file() and json.loads(path.read_text()).get("settings") == settings:
                continue
            print(f"== {scenario}: {name} ({source or 'untouched'}) {settings}", flush=True)
            best = None if name == "no_unlearning" else {"best_params": settings}
            evaluation = quality.evaluate(state, scale, name, scenario, best, attacks=ATTACKS)
            evaluation["settings_source"] = source
            quality.write_json(path, evaluation)
            write(args)


def cell(attack: dict, metric: str, greater_is_better: bool) -> str:
    """The attack's best variant (worse than the unattacked model or not: what quantizing, or a context, does)."""
    variants = [point for point in attack["curve"] if "variant" in point and not point.get("diverged")]
    if not variants:
        return "diverged" if attack["diverged_at"] else "no variant fit"
    best = (max if greater_is_better else min)(variants, key=lambda point: point[metric])
    return f"{best[metric]:.3f} ({best['variant']})"


def markdown(results: dict) -> str:
    lines = []
    for scenario, rows in results.items():
        metric = quality.METRICS[scenario]
        attacker_wants_more = scenario == "facts"  # the attacker's direction: accuracy up, forget loss down
        lines += [f"### {scenario}: `{metric}` ({'higher' if scenario == 'code' else 'lower'} is more robust)", "",
                  "| model | settings | after unlearning | retain_loss | " + " | ".join(f"{a} (best variant)" for a in ATTACKS) + " | attacker's best over these (the unattacked model included) |",
                  "|---|---|---|---|" + "---|" * len(ATTACKS) + "---|"]  # fmt: skip
        for name, evaluation in rows.items():
            start, best = evaluation["after_unlearning"], evaluation["attack_best"]
            attacks = evaluation["attacks"]["attacks"]
            settings = evaluation.get("settings_source") or "untouched"
            if name != "no_unlearning" and evaluation.get("settings") == (current := settings_for(scenario, name, quality.SCALES["default"]))[0]:
                settings = current[1]  # the study may have grown since: say how tuned these settings are now
            if evaluation.get("settings"):
                settings += ": " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in evaluation["settings"].items())
            where = f"{best['attack']}, {best['variant']}" if best is not None and "variant" in best else "unattacked"
            best_text = "all diverged" if best is None else f"**{best[metric]:.3f}** ({where})"
            lines.append(f"| {name} | {settings} | {start[metric]:.3f} | {start['retain_loss']:.3f} | "
                         + " | ".join(cell(attacks[a], metric, attacker_wants_more) if a in attacks else "" for a in ATTACKS) + f" | {best_text} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def collect(output_dir: Path) -> dict:
    state = quality.parse_args(["--output_dir", str(output_dir)])
    results: dict = {}
    for scenario in ("code", "facts"):
        rows = {name: json.loads(path.read_text()) for name in MODELS if (path := quality.evaluation_path(state, scenario, name)).is_file()}
        if rows:
            results[scenario] = rows
    return results


def write(args: argparse.Namespace) -> None:
    results = collect(args.output_dir)
    text = markdown(results)
    quality.write_text(args.output_dir / "no_training_attacks.md", text)
    quality.write_json(args.output_dir / "no_training_attacks.json", {"environment": environment(), "attacks": ATTACKS, "results": results})
    print(text, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=["code", "facts"], choices=["code", "facts"])
    parser.add_argument("--methods", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (one per worker when two run side by side)")
    parser.add_argument("--output_dir", type=Path, default=OUTPUT)
    parser.add_argument("--report", action="store_true", help="write the table from the state, compute nothing")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.report:
        run(args)
    write(args)


if __name__ == "__main__":
    main(sys.argv[1:])
