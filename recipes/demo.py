"""The default demo (`make demo`): MUDMAN on the embedded SmolLM2-135M-Instruct, then a relearning attack.

Forget set: Python source of the standard library (the MUDMAN paper's Python experiment, offline).
Retain set: English prose of the standard library's pydoc help topics. Both are cut into 100-token
chunks; the forget chunks are split 50/25/25 into unlearn / attack / eval parts, so the attack
fine-tunes on chunks that are never evaluated.

The same relearning attack runs on the unlearned model and on an untouched copy (the no-unlearning
baseline). One table shows held-out forget and retain loss before, after unlearning and at the
attacker's best point (lowest forget loss, the unattacked model included); results go to JSON.

    python recipes/demo.py [--unlearn_steps 40 --attack_steps 30 ...]
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, HfArgumentParser

from hf_unlearn import RelearnAttackConfig, RelearnAttackTrainer, UnlearnConfig, UnlearnTrainer, default_model_path
from hf_unlearn.data import DataArguments, build_unlearning_data


# The demo's data: a sample of 60 standard-library modules is plenty for the steps it runs.
DEMO_DATA_DEFAULTS = {"max_forget_documents": 60, "max_eval_examples": 32}


@dataclass
class DemoArguments:
    output_dir: str = field(default="outputs/demo", metadata={"help": "Where results.json and runs go."})
    batch_size: int = field(default=8, metadata={"help": "Examples per step, unlearning and attack alike."})
    unlearn_steps: int = field(default=30, metadata={"help": "MUDMAN loops."})
    unlearning_rate: float = field(default=3e-4, metadata={"help": "MUDMAN unlearning_rate."})
    retaining_rate: float = field(default=1e-3, metadata={"help": "MUDMAN retaining_rate."})
    adv_lr: float = field(default=1e-3, metadata={"help": "MUDMAN adv_lr."})
    fork_every_n_loops: int = field(default=16, metadata={"help": "MUDMAN fork_every_n_loops."})
    attack_steps: int = field(default=60, metadata={"help": "Relearning-attack SGD steps."})
    attack_lr: float = field(default=3e-3, metadata={"help": "Relearning-attack learning rate (paper, SmolLM)."})
    eval_every: int = field(default=10, metadata={"help": "Attack steps between evaluations."})
    seed: int = field(default=42, metadata={"help": "Seed of sampling and training."})


def attack(model, tokenizer, data: dict, args: DemoArguments, name: str) -> list[dict]:
    config = RelearnAttackConfig(
        output_dir=str(Path(args.output_dir) / f"attack_{name}"),
        max_steps=args.attack_steps,
        learning_rate=args.attack_lr,
        per_device_train_batch_size=args.batch_size,
        eval_steps=args.eval_every,
        save_strategy="no",
        report_to="none",
        seed=args.seed,
    )
    trainer = RelearnAttackTrainer(
        model, config, attack_dataset=data["attack"], eval_dataset=data["eval"], processing_class=tokenizer
    )
    trainer.train()
    return trainer.attack_curve()


def main(data_args: DataArguments, args: DemoArguments) -> dict:
    torch.manual_seed(args.seed)
    started = time.time()
    timings = {}
    model_path = default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    # One pass over the data at most: the attack never sees an example twice.
    train_examples = args.batch_size * max(args.unlearn_steps, args.attack_steps)
    data_args.max_unlearn_examples = data_args.max_attack_examples = train_examples
    data = build_unlearning_data(data_args, tokenizer)

    print("\n== 1/3 MUDMAN unlearning ==", flush=True)
    phase = time.time()
    model = AutoModelForCausalLM.from_pretrained(model_path)
    config = UnlearnConfig(
        output_dir=str(Path(args.output_dir) / "unlearn"),
        max_steps=args.unlearn_steps,
        per_device_train_batch_size=args.batch_size,
        unlearning_rate=args.unlearning_rate,
        retaining_rate=args.retaining_rate,
        adv_lr=args.adv_lr,
        fork_every_n_loops=args.fork_every_n_loops,
        save_strategy="no",
        report_to="none",
        seed=args.seed,
    )
    UnlearnTrainer(
        model, config, forget_dataset=data["unlearn"], retain_dataset=data["retain"], processing_class=tokenizer
    ).train()
    timings["unlearn_s"] = time.time() - phase

    print("\n== 2/3 relearning attack on the unlearned model ==", flush=True)
    phase = time.time()
    curves = {"mudman": attack(model, tokenizer, data, args, "mudman")}
    timings["attack_mudman_s"] = time.time() - phase

    print("\n== 3/3 relearning attack on the untouched model (no-unlearning baseline) ==", flush=True)
    phase = time.time()
    untouched = AutoModelForCausalLM.from_pretrained(model_path)
    curves["no_unlearning"] = attack(untouched, tokenizer, data, args, "no_unlearning")
    timings["attack_no_unlearning_s"] = time.time() - phase
    timings["total_s"] = time.time() - started

    before = curves["no_unlearning"][0]  # step 0 of the untouched model's attack: the original model
    rows = {}
    for name, curve in curves.items():
        best = min(curve, key=lambda point: point["forget_loss"])
        rows[name] = {"before": before, "after_unlearning": curve[0], "attack_best": best}
    results = {"data": asdict(data_args), "arguments": asdict(args), "model": str(model_path), "rows": rows, "curves": curves, "timings": timings}
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.output_dir) / "results.json").write_text(json.dumps(results, indent=2))
    print("\n" + format_table(rows, timings))
    print(f"\nresults: {Path(args.output_dir) / 'results.json'}")
    return results


def format_table(rows: dict, timings: dict) -> str:
    """Markdown table of held-out losses (nats/token) per run: before, after unlearning, at the attack's best."""
    header = ["run", "forget: before", "after unlearning", "attack best", "retain: before", "after unlearning", "attack best"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in rows.items():
        b, u, a = row["before"], row["after_unlearning"], row["attack_best"]
        cells = [name, f"{b['forget_loss']:.3f}", f"{u['forget_loss']:.3f}", f"{a['forget_loss']:.3f} (step {a['step']})"]
        cells += [f"{b['retain_loss']:.3f}", f"{u['retain_loss']:.3f}", f"{a['retain_loss']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"\nwall time: {timings['total_s'] / 60:.1f} min")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = HfArgumentParser((DataArguments, DemoArguments))
    parser.set_defaults(**DEMO_DATA_DEFAULTS)
    main(*parser.parse_args_into_dataclasses())
