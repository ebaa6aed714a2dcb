"""Benchmark: robustness of unlearned facts at equal disruption (CIR vs GradDiff vs NPO, and others).

Protocol (Deeb & Roger; docs/design.md §6): the world capitals the model knows are all unlearned, each as
three fact-stating sentences ("The capital of X is Y.", "Y is the capital of X.", "X's capital
city is Y.", as CIR's authors train); the relearning attacks fine-tune on split A's sentences;
accuracy is measured on split B, never attacked. Every method unlearns epoch by epoch until its
loss on general text that *no method trains on* (``--disruption_source``, held-out chunks of the
standard library's Python source by default) exceeds its start by the same ``--budget`` (+0.1 %,
CIR's): the last model within budget is the one attacked, so methods compare at equal disruption.
(Measuring disruption on the retain set's own distribution would flatter methods whose retain
loss trains on it.) Retain data: pydoc prose. Each unlearned model (and the untouched one) is
attacked by the ``--attack_suite`` (``standard``: the attacker's best over 8 attacks) and,
separately, by CIR's authors' own attack (plain SGD at lr 1e-5 for 100 epochs, ``paper`` preset's
``cir_sgd``), for comparison with the paper.

Resumable: unlearned models are saved under ``--output_dir``/<run> and finished attacks are read
back. A run is the method, or with ``--set`` overrides ``method[field=value]``, so variants keep their
own folders and share the untouched model's evaluation. Writes RobustnessReports (``suite/`` and
``authors_attack/``) and ``results.json`` with timings (seconds per unlearned fact) to
``--output_dir``/reports/<runs joined by +>/. The untouched model knows every fact (accuracy 1.0, the
ceiling), so it is evaluated, not attacked, unless ``--attack_untouched``.

    python benchmarks/facts_robustness.py --methods cir graddiff npo
    python benchmarks/facts_robustness.py --methods cir --set cir.projection=orthogonal --attacks adamw_3e-5 adamw_1e-4
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_unlearn import (
    AttackSuite,
    CIRConfig,
    DisruptionBudgetCallback,
    GradDiffConfig,
    MUDMANConfig,
    NPOConfig,
    default_model_path,
)
from hf_unlearn.attacks import PRESETS
from hf_unlearn.data.facts import world_capitals
from hf_unlearn.environment import environment
from hf_unlearn.pipeline import robustness_report, unlearn
from hf_unlearn.scenarios import facts_scenario

# Per method: config class and settings for SmolLM2-135M (30 layers), evaluated every epoch so that
# the disruption budget is checked as in CIR's paper. Chosen in README ("CIR on facts"). GradDiff and
# NPO: the largest learning rate of 1e-5, 3e-6, 1e-6 whose first epoch stays within the budget (NPO
# at 1e-5 went beyond it in its first epoch, which left the untouched model as its result).
METHODS = {
    "cir": (CIRConfig, dict(step_norm=1.0, loss_layers=list(range(6, 12)), retain_layer=12, per_device_train_batch_size=32)),
    "graddiff": (GradDiffConfig, dict(learning_rate=1e-5)),
    "npo": (NPOConfig, dict(learning_rate=3e-6)),
    "mudman": (MUDMANConfig, dict(unlearning_rate=1e-4, fork_every_n_loops=6)),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["cir", "graddiff", "npo"], choices=sorted(METHODS))
    parser.add_argument("--budget", type=float, default=0.001, help="relative increase of the general-text loss allowed")
    parser.add_argument("--max_epochs", type=int, default=200)
    parser.add_argument("--max_countries", type=int, default=120)
    parser.add_argument("--phrasings", type=int, default=3, help="fact-stating sentences per fact (0: prompt + answer)")
    parser.add_argument("--batch_size", type=int, default=8, help="batch of the attacks, and of unlearning where a method does not set its own (CIR: 32, the authors')")
    parser.add_argument("--disruption_source", default="python_stdlib", help="text source (hf_unlearn.data.TEXT_SOURCES) measuring disruption")
    parser.add_argument("--disruption_eval", type=int, default=32, help="how many of its 100-token chunks")
    parser.add_argument("--attack_suite", default="standard", choices=sorted(PRESETS))
    parser.add_argument("--attacks", nargs="+", default=None, help="only these attacks of the suite (default: all)")
    parser.add_argument("--attack_steps", type=int, default=None, help="steps of every suite attack (default: the preset's)")
    parser.add_argument("--no_authors_attack", action="store_true", help="skip CIR's authors' attack")
    parser.add_argument("--attack_untouched", action="store_true",
                        help="attack the untouched model too (it knows every fact: accuracy 1.0 is the ceiling, so by default it is only evaluated)")
    parser.add_argument("--output_dir", default="outputs/benchmarks/facts_robustness")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--set", nargs="*", default=[], metavar="METHOD.FIELD=VALUE", help="override a method setting, e.g. cir.step_norm=1.0")
    return parser.parse_args(argv)


def method_settings(overrides: list[str]) -> tuple[dict[str, dict], dict[str, str]]:
    """Each method's settings with the ``--set`` overrides, and its run name: the method, followed by its
    overrides where there are any (``cir[projection=orthogonal]``), so variants keep their own folders."""
    settings = {method: dict(values) for method, (_, values) in METHODS.items()}
    changed: dict[str, list[str]] = {method: [] for method in METHODS}
    for override in overrides:
        key, _, value = override.partition("=")
        method, _, field = key.partition(".")
        if not (value and field) or method not in METHODS:
            raise ValueError(f"--set {override!r} is invalid: write METHOD.FIELD=VALUE with METHOD one of {', '.join(METHODS)}, e.g. cir.step_norm=1.0")
        try:
            settings[method][field] = json.loads(value)
        except json.JSONDecodeError:  # a bare string such as cir.projection=orthogonal
            settings[method][field] = value
        changed[method].append(f"{field}={value}")
    names = {method: f"{method}[{','.join(fields)}]" if fields else method for method, fields in changed.items()}
    return settings, names


def unlearn_within_budget(method: str, name: str, settings: dict, data, tokenizer, path, args: argparse.Namespace, output_dir: Path) -> tuple:
    """The last model within the disruption budget and what the run took; saved under the run ``name``,
    and read back when it exists with the same settings (a changed default unlearns again)."""
    final = output_dir / name / "unlearned"
    info_path = final / "unlearning.json"
    if info_path.is_file() and json.loads(info_path.read_text())["settings"] == settings:
        return AutoModelForCausalLM.from_pretrained(final), json.loads(info_path.read_text())
    config = METHODS[method][0](
        output_dir=str(output_dir / name), num_train_epochs=args.max_epochs, eval_strategy="epoch", eval_on_start=True,
        save_strategy="no", report_to="none", seed=args.seed, disruption_budget=args.budget, disruption_unit="relative",
        **{"per_device_train_batch_size": args.batch_size, **settings},
    )  # fmt: skip
    started = time.time()
    trainer = unlearn(AutoModelForCausalLM.from_pretrained(path), config, data, tokenizer)
    seconds = time.time() - started
    budget = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, DisruptionBudgetCallback))
    info = {
        "settings": settings,
        "seconds": seconds,
        "seconds_per_fact": seconds / data.details["known_facts"],
        "steps": trainer.state.global_step,
        "budget_start": budget.start,
        "kept_step": budget.within_budget["step"] if budget.within_budget else None,
        "stopped_by_budget": budget.exceeded_at is not None,
    }
    trainer.save_model(str(final))
    info_path.write_text(json.dumps(info, indent=2))
    return trainer.model, info


def run(args: argparse.Namespace) -> dict:
    settings, names = method_settings(args.set)
    torch.manual_seed(args.seed)
    output_dir = Path(args.output_dir)
    path = default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    untouched = AutoModelForCausalLM.from_pretrained(path)
    data = facts_scenario(
        untouched, tokenizer, world_capitals(args.max_countries), general_source=args.disruption_source,
        max_eval_examples=args.disruption_eval, phrasings=args.phrasings or None, seed=args.seed,
    )  # fmt: skip
    models, unlearning = {}, {}
    for method in args.methods:
        name = names[method]
        models[name], unlearning[name] = unlearn_within_budget(method, name, settings[method], data, tokenizer, path, args, output_dir)
    models["no_unlearning"] = untouched

    details = {"arguments": vars(args), "scenario": data.details, "unlearning": unlearning, "threads": torch.get_num_threads(),
               "device": "cuda" if torch.cuda.is_available() else "cpu"}  # fmt: skip
    common = dict(per_device_train_batch_size=args.batch_size, eval_steps=10, metric_for_best_model=data.best_metric, seed=args.seed)
    suites = {"suite": AttackSuite.preset(args.attack_suite, output_dir=str(output_dir / "attacks"), names=args.attacks, **common,
                                          **({} if args.attack_steps is None else {"max_steps": args.attack_steps}))}  # fmt: skip
    if not args.no_authors_attack:
        common.pop("per_device_train_batch_size")  # the authors' batch of 32
        suites["authors_attack"] = AttackSuite.preset("paper", output_dir=str(output_dir / "attacks"), names=["cir_sgd"], **common)
    reports, report_dir = {}, output_dir / "reports" / "+".join(models)
    for name, suite in suites.items():
        title = f"Facts at equal disruption (+{100 * args.budget:g} % general-text loss): SmolLM2-135M world capitals, {name}"
        reports[name] = robustness_report(
            title, models, suite, attack_dataset=data.attack, eval_dataset=data.eval, evaluators=data.evaluators,
            retain_dataset=data.retain, processing_class=tokenizer, details=details, resume=True, attack_baseline=args.attack_untouched,
        )  # fmt: skip
        reports[name].save(report_dir / name)
    (report_dir / "results.json").write_text(json.dumps({**details, "environment": environment()}, indent=2))
    return reports


def main() -> None:
    reports = run(parse_args())
    for report in reports.values():
        print(report.to_markdown())
    for method, info in next(iter(reports.values())).details["unlearning"].items():
        print(f"{method}: {info['steps']} steps, {info['seconds']:.0f} s, {info['seconds_per_fact']:.2f} s/fact, "
              f"kept step {info['kept_step']}, stopped by budget: {info['stopped_by_budget']}")  # fmt: skip


if __name__ == "__main__":
    main()
