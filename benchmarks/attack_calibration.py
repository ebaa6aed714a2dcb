"""Benchmark: which relearning attacks recover unlearned knowledge, and which only break the model.

The measurements behind the attack suite presets (``hf_unlearn.attacks.PRESETS``). A model is
unlearned with MUDMAN (the demo's settings), then a wide grid of attacks (SGD with and without
clipping, AdamW, LoRA, retain-interleaved, at several learning rates) runs on it and on the
untouched model; the report lists every attack's best point and where it diverged (NaN, or retain
loss above ``divergence_retain_ratio`` times its start: a broken model). A good suite holds the
attacks that recover most from the unlearned model without breaking either model.

Resumable: the unlearned model is saved once, and every finished attack is read back on rerun.

    python benchmarks/attack_calibration.py --scenario facts
    python benchmarks/attack_calibration.py --scenario code --attacks adamw_1e-4 sgd_3e-3_noclip
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_unlearn import AttackSuite, MUDMANConfig, RelearnAttackConfig, default_model_path
from hf_unlearn.attacks import ADAMW_CLIPPED, LORA_ADAMW, SGD
from hf_unlearn.data import DataArguments
from hf_unlearn.environment import environment
from hf_unlearn.evaluation.report import finite_or_null
from hf_unlearn.pipeline import robustness_report, unlearn
from hf_unlearn.scenarios import code_scenario, facts_scenario

GRID = {
    "sgd_1e-3_noclip": {**SGD, "learning_rate": 1e-3},
    "sgd_3e-3_noclip": {**SGD, "learning_rate": 3e-3},
    "sgd_3e-3_clip": {**SGD, "learning_rate": 3e-3, "max_grad_norm": 1.0},
    "sgd_1e-2_clip": {**SGD, "learning_rate": 1e-2, "max_grad_norm": 1.0},
    "sgd_3e-2_clip": {**SGD, "learning_rate": 3e-2, "max_grad_norm": 1.0},
    "sgd_1e-1_clip": {**SGD, "learning_rate": 1e-1, "max_grad_norm": 1.0},
    "adamw_1e-5": {**ADAMW_CLIPPED, "learning_rate": 1e-5},
    "adamw_3e-5": {**ADAMW_CLIPPED, "learning_rate": 3e-5},
    "adamw_1e-4": {**ADAMW_CLIPPED, "learning_rate": 1e-4},
    "adamw_3e-4": {**ADAMW_CLIPPED, "learning_rate": 3e-4},
    "adamw_1e-3": {**ADAMW_CLIPPED, "learning_rate": 1e-3},
    "lora_3e-4": {**LORA_ADAMW, "learning_rate": 3e-4},
    "lora_1e-3": {**LORA_ADAMW, "learning_rate": 1e-3},
    "lora_3e-3": {**LORA_ADAMW, "learning_rate": 3e-3},
    "retain_interleaved_sgd_3e-4": {**SGD, "learning_rate": 3e-4, "interleave_retain": True},
    "retain_interleaved_adamw_1e-4": {**ADAMW_CLIPPED, "learning_rate": 1e-4, "interleave_retain": True},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=["facts", "code"], default="facts")
    parser.add_argument("--attacks", nargs="+", choices=sorted(GRID), default=list(GRID))
    parser.add_argument("--attack_steps", type=int, default=60)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--unlearn_steps", type=int, default=30, help="MUDMAN loops (the demo's)")
    parser.add_argument("--unlearning_rate", type=float, default=3e-4)
    parser.add_argument("--untouched", action="store_true", help="also attack the untouched model (the no_unlearning baseline)")
    parser.add_argument("--output_dir", default="outputs/benchmarks/attack_calibration")
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    output_dir = Path(args.output_dir) / args.scenario
    path = default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    untouched = AutoModelForCausalLM.from_pretrained(path)
    if args.scenario == "code":
        data_args = DataArguments(max_forget_documents=60, max_eval_examples=32, max_unlearn_examples=args.batch_size * args.unlearn_steps)
        data = code_scenario(data_args, tokenizer)
    else:
        data = facts_scenario(untouched, tokenizer, seed=args.seed)

    unlearned_dir = output_dir / "mudman"
    if not (unlearned_dir / "config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(path)
        config = MUDMANConfig(
            output_dir=str(unlearned_dir), max_steps=args.unlearn_steps, per_device_train_batch_size=args.batch_size,
            unlearning_rate=args.unlearning_rate, fork_every_n_loops=16, save_strategy="no", report_to="none", seed=args.seed,
        )  # fmt: skip
        unlearn(model, config, data, tokenizer).save_model()
    unlearned = AutoModelForCausalLM.from_pretrained(unlearned_dir)

    suite = AttackSuite(
        {
            name: RelearnAttackConfig(
                output_dir=str(output_dir / "attacks" / name), max_steps=args.attack_steps, per_device_train_batch_size=args.batch_size,
                eval_steps=10, metric_for_best_model=data.best_metric, report_to="none", seed=args.seed, **GRID[name],
            )  # fmt: skip
            for name in args.attacks
        }
    )
    started = time.time()
    inputs = dict(attack_dataset=data.attack, eval_dataset=data.eval, evaluators=data.evaluators, retain_dataset=data.retain,
                  processing_class=tokenizer)  # fmt: skip
    if args.untouched:
        report = robustness_report(
            f"Attack calibration ({args.scenario}): MUDMAN-unlearned vs untouched SmolLM2-135M",
            {"mudman": unlearned, "no_unlearning": untouched}, suite, resume=True,
            details={"arguments": vars(args), "scenario": data.details, "threads": torch.get_num_threads()}, **inputs,
        )  # fmt: skip
        report.details["seconds"] = time.time() - started
        report.save(output_dir)
        print(report.to_markdown())
    else:
        result = suite.in_folder("mudman").run(unlearned, resume=True, **inputs)
        (output_dir / "calibration.json").write_text(json.dumps(finite_or_null(result.to_dict()), indent=2, allow_nan=False))
        print(calibration_table(result))
    (output_dir / "arguments.json").write_text(json.dumps({**vars(args), "environment": environment()}, indent=2))


def calibration_table(result) -> str:
    """Per attack: the best point, the retain loss there and where the attack broke the model."""
    metric = result.metric
    # Accuracy ties at 0 for many attacks: the highest answer probability before divergence tells them apart.
    extra = ["facts_answer_prob"] if "facts_answer_prob" in result.start_point else []
    lines = [
        f"| attack | settings | best step | {metric} | " + "".join(f"max {m} | " for m in extra) + "retain_loss | diverged |",
        "|---|---|---|---|" + "---|" * len(extra) + "---|---|",
    ]
    for name, attack in result.attacks.items():
        best = attack["best"]
        valid = [p for p in attack["curve"] if not p.get("diverged")]
        cells = [f"{best[metric]:.4g}", *(f"{max(p[m] for p in valid):.3g}" for m in extra), f"{best['retain_loss']:.4g}"]
        diverged = "" if attack["diverged_at"] is None else f"step {attack['diverged_at']}"
        lines.append(f"| {name} | {attack['settings']} | {best['step']} | " + " | ".join(cells) + f" | {diverged} |")
    start = result.start_point
    return f"Before the attacks: {metric} {start[metric]:.4g}, retain_loss {start['retain_loss']:.4g}\n\n" + "\n".join(lines)


if __name__ == "__main__":
    main()
