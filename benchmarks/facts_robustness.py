"""Benchmark: robustness of unlearned facts at equal disruption (CIR vs GradDiff, and others).

Protocol (Deeb & Roger; DESIGN §6): the world capitals the model knows are all unlearned; the
relearning attack fine-tunes on split A; accuracy is measured on split B, never attacked. Every
method unlearns until its loss on general text that *no method trains on* (``--disruption_source``,
held-out chunks of the standard library's Python source by default) exceeds its start by the same
``--budget`` (default +0.1 %, CIR's): the last model within budget is the one attacked, so methods
are compared at equal disruption. (Measuring disruption on the retain set's own distribution
would flatter methods whose retain loss trains on it, such as GradDiff.) Retain data: pydoc prose.
Writes a RobustnessReport and ``results.json`` with timings (seconds per unlearned fact) to
``--output_dir``.

    python benchmarks/facts_robustness.py --methods cir graddiff
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_unlearn import (
    CIRConfig,
    DisruptionBudgetCallback,
    GradDiffConfig,
    RelearnAttackConfig,
    RelearnAttackTrainer,
    UnlearnConfig,
    UnlearnTrainer,
    default_model_path,
)
from hf_unlearn.data import chunk_tokens, load_text_source, pydoc_prose
from hf_unlearn.data.facts import facts_protocol_splits, known_facts, tokenize_facts, world_capitals
from hf_unlearn.evaluation import FactEvaluator, RobustnessReport

# Per method: config class and settings for SmolLM2-135M (30 layers). Epoch-wise evaluation, so the
# disruption budget is checked as CIR's paper does. CIR's step norm is raised from the paper's 0.2
# (tuned for 8B models): at 0.2, 15 epochs moved held-out accuracy only to 0.91, at 4.0 its first
# update already exceeds the budget; 1.0 was the best of {0.2, 1.0, 2.0, 4.0} here.
METHODS = {
    "cir": (CIRConfig, dict(step_norm=1.0, loss_layers=list(range(6, 12)), retain_layer=12)),
    "graddiff": (GradDiffConfig, dict(learning_rate=1e-5)),
    "mudman": (UnlearnConfig, dict(unlearning_rate=1e-4, fork_every_n_loops=6)),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["cir", "graddiff"], choices=sorted(METHODS))
    parser.add_argument("--budget", type=float, default=0.001, help="relative retain-loss increase allowed")
    parser.add_argument("--max_epochs", type=int, default=30)
    parser.add_argument("--max_countries", type=int, default=120)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--disruption_source", default="python_stdlib", help="text source (hf_unlearn.data.TEXT_SOURCES) measuring disruption")
    parser.add_argument("--disruption_eval", type=int, default=32, help="how many of its 100-token chunks")
    parser.add_argument("--attack_steps", type=int, default=60)
    parser.add_argument("--attack_lr", type=float, default=1e-3)
    parser.add_argument("--output_dir", default="outputs/benchmarks/facts_robustness")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--set", nargs="*", default=[], metavar="METHOD.FIELD=VALUE", help="override a method setting, e.g. cir.step_norm=1.0")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> RobustnessReport:
    settings = {method: dict(values) for method, (_, values) in METHODS.items()}
    for override in args.set:
        key, _, value = override.partition("=")
        method, _, field = key.partition(".")
        if not (value and field) or method not in METHODS:
            raise ValueError(f"--set {override!r} is invalid: write METHOD.FIELD=VALUE with METHOD one of {', '.join(METHODS)}, e.g. cir.step_norm=1.0")
        try:
            settings[method][field] = json.loads(value)
        except json.JSONDecodeError:  # a bare string such as cir.cir_loss=neg_cross_entropy
            settings[method][field] = value
    torch.manual_seed(args.seed)
    output_dir = Path(args.output_dir)

    path = default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    known = known_facts(AutoModelForCausalLM.from_pretrained(path), tokenizer, world_capitals(args.max_countries))
    parts = facts_protocol_splits(known, seed=args.seed)
    prose = chunk_tokens(pydoc_prose(), tokenizer)
    general = chunk_tokens(load_text_source(args.disruption_source), tokenizer).shuffle(seed=args.seed).select(range(args.disruption_eval))
    evaluators = {"facts": FactEvaluator(parts["eval"])}
    # "retain" is what the disruption budget watches: general text outside every method's training data.
    eval_sets = {"forget": tokenize_facts(parts["eval"], tokenizer), "retain": general}

    attacks, timings, unlearning = {}, {}, {}
    for method in [*args.methods, "no_unlearning"]:
        model = AutoModelForCausalLM.from_pretrained(path)
        if method != "no_unlearning":
            config_class = METHODS[method][0]
            config = config_class(
                output_dir=str(output_dir / method), num_train_epochs=args.max_epochs, per_device_train_batch_size=args.batch_size,
                eval_strategy="epoch", eval_on_start=True, save_strategy="no", report_to="none", seed=args.seed,
                **settings[method],
            )  # fmt: skip
            trainer = UnlearnTrainer(
                model, config, forget_dataset=tokenize_facts(parts["unlearn"], tokenizer), retain_dataset=prose,
                eval_dataset=eval_sets, evaluators=evaluators, processing_class=tokenizer,
            )  # fmt: skip
            if not any(isinstance(cb, DisruptionBudgetCallback) for cb in trainer.callback_handler.callbacks):
                trainer.add_callback(DisruptionBudgetCallback(args.budget))
            started = time.time()
            trainer.train()
            timings[method] = time.time() - started
            budget = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, DisruptionBudgetCallback))
            unlearning[method] = {
                "seconds": timings[method],
                "seconds_per_fact": timings[method] / len(parts["unlearn"]),
                "steps": trainer.state.global_step,
                "budget_start": budget.start,
                "kept_step": budget.within_budget["step"] if budget.within_budget else None,
                "stopped_by_budget": budget.exceeded_at is not None,
            }
            model = trainer.model
        attack = RelearnAttackTrainer(
            model,
            RelearnAttackConfig(
                output_dir=str(output_dir / f"attack_{method}"), max_steps=args.attack_steps, learning_rate=args.attack_lr,
                per_device_train_batch_size=args.batch_size, eval_steps=10, metric_for_best_model="eval_facts_accuracy",
                save_strategy="no", report_to="none", seed=args.seed,
            ),  # fmt: skip
            attack_dataset=tokenize_facts(parts["attack"], tokenizer), eval_dataset=eval_sets, evaluators=evaluators,
            processing_class=tokenizer,
        )  # fmt: skip
        attack.train()
        attacks[method] = attack

    details = {"arguments": vars(args), "settings": {m: settings[m] for m in args.methods}, "known_facts": len(known), "split_a": len(parts["attack"]), "split_b": len(parts["eval"]),
               "unlearning": unlearning, "device": str(torch.device("cuda" if torch.cuda.is_available() else "cpu")),
               "threads": torch.get_num_threads()}  # fmt: skip
    report = RobustnessReport.from_attacks("Facts at equal disruption: SmolLM2-135M world capitals", attacks, details=details)
    report.save(output_dir)
    (output_dir / "results.json").write_text(json.dumps(details, indent=2))
    return report


def main() -> None:
    report = run(parse_args())
    print(report.to_markdown())
    for method, info in report.details["unlearning"].items():
        print(f"{method}: {info['steps']} steps, {info['seconds']:.0f} s, {info['seconds_per_fact']:.2f} s/fact, "
              f"kept step {info['kept_step']}, stopped by budget: {info['stopped_by_budget']}")  # fmt: skip


if __name__ == "__main__":
    main()
