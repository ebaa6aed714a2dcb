"""The default demo (`make demo`): MUDMAN on the embedded SmolLM2-135M-Instruct, then a relearning attack.

Two scenarios, each ending in a RobustnessReport (JSON, markdown, PNG of the attack curves):

- ``python`` (default): forget Python source of the standard library (the MUDMAN paper's Python
  experiment, offline), keep English prose of the standard library's pydoc help topics. Both are
  cut into 100-token chunks; the forget chunks are split 50/25/25 into unlearn / attack / eval, so
  the attack fine-tunes on chunks that are never evaluated. The attacker's best point is the lowest
  held-out forget loss.
- ``facts`` (`make demo SCENARIO=facts`): forget the world capitals the model knows, with the
  protocol of Deeb & Roger: unlearn all of them, attack on half (A), measure the other half (B).
  The attacker's best point is the highest accuracy on B.

The same relearning attack runs on the unlearned model and on an untouched copy (the no-unlearning
baseline); both start with an evaluation, which gives the "before" and "after unlearning" rows.

    python recipes/demo.py [--scenario facts] [--unlearn_steps 30 --attack_steps 60 ...]
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, HfArgumentParser

from hf_unlearn import RelearnAttackConfig, RelearnAttackTrainer, UnlearnConfig, UnlearnTrainer, default_model_path
from hf_unlearn.data import DataArguments, build_unlearning_data, chunk_tokens, load_text_source, split_dataset
from hf_unlearn.data.facts import facts_protocol_splits, known_facts, tokenize_facts, world_capitals
from hf_unlearn.evaluation import FactEvaluator, RobustnessReport

# The python scenario's data: a sample of 60 standard-library modules is plenty for the steps it runs.
DEMO_DATA_DEFAULTS = {"max_forget_documents": 60, "max_eval_examples": 32}


@dataclass
class DemoArguments:
    scenario: str = field(default="python", metadata={"help": "python (code vs prose) or facts (world capitals)."})
    output_dir: str = field(default="outputs/demo", metadata={"help": "Reports and runs go to <output_dir>/<scenario>."})
    batch_size: int = field(default=8, metadata={"help": "Examples per step, unlearning and attack alike."})
    unlearn_steps: int = field(default=30, metadata={"help": "MUDMAN loops."})
    unlearning_rate: float = field(default=3e-4, metadata={"help": "MUDMAN unlearning_rate."})
    retaining_rate: float = field(default=1e-3, metadata={"help": "MUDMAN retaining_rate."})
    adv_lr: float = field(default=1e-3, metadata={"help": "MUDMAN adv_lr."})
    fork_every_n_loops: int = field(default=16, metadata={"help": "MUDMAN fork_every_n_loops."})
    attack_steps: int = field(default=60, metadata={"help": "Relearning-attack SGD steps."})
    attack_lr: float = field(default=3e-3, metadata={"help": "Relearning-attack learning rate (paper, SmolLM)."})
    eval_every: int = field(default=10, metadata={"help": "Attack steps between evaluations."})
    max_countries: int = field(default=120, metadata={"help": "facts: capitals of this many most populous countries."})
    seed: int = field(default=42, metadata={"help": "Seed of sampling and training."})

    def __post_init__(self):
        if self.scenario not in ("python", "facts"):
            raise ValueError(f"scenario={self.scenario!r} is invalid: use 'python' or 'facts'")


def python_scenario(data_args: DataArguments, args: DemoArguments, tokenizer, model) -> dict:
    # One pass over the data at most: the attack never sees an example twice.
    data_args.max_unlearn_examples = data_args.max_attack_examples = args.batch_size * max(args.unlearn_steps, args.attack_steps)
    data = build_unlearning_data(data_args, tokenizer)
    return {**data, "evaluators": {}, "best_metric": "eval_forget_loss", "details": {"data": asdict(data_args)}}


def facts_scenario(data_args: DataArguments, args: DemoArguments, tokenizer, model) -> dict:
    known = known_facts(model, tokenizer, world_capitals(args.max_countries))
    parts = facts_protocol_splits(known, seed=args.seed)
    prose = chunk_tokens(load_text_source(data_args.retain_source), tokenizer, chunk_length=data_args.chunk_length)
    prose = split_dataset(prose, names=("train", "eval"), fractions=(0.75, 0.25), seed=data_args.split_seed)
    return {
        "unlearn": tokenize_facts(parts["unlearn"], tokenizer),  # all known facts
        "attack": tokenize_facts(parts["attack"], tokenizer),  # split A
        "retain": prose["train"],
        "eval": {
            "forget": tokenize_facts(parts["eval"], tokenizer),
            "retain": prose["eval"].select(range(min(data_args.max_eval_examples, len(prose["eval"])))),
        },
        "evaluators": {"facts": FactEvaluator(parts["eval"])},  # split B, never attacked
        "best_metric": "eval_facts_accuracy",
        "details": {"known_facts": len(known), "of": args.max_countries, "split_a": len(parts["attack"]), "split_b": len(parts["eval"])},
    }


def attack(model, tokenizer, data: dict, args: DemoArguments, name: str) -> RelearnAttackTrainer:
    config = RelearnAttackConfig(
        output_dir=str(Path(args.output_dir) / args.scenario / f"attack_{name}"),
        max_steps=args.attack_steps,
        learning_rate=args.attack_lr,
        per_device_train_batch_size=args.batch_size,
        eval_steps=args.eval_every,
        metric_for_best_model=data["best_metric"],
        save_strategy="no",
        report_to="none",
        seed=args.seed,
    )
    trainer = RelearnAttackTrainer(
        model,
        config,
        attack_dataset=data["attack"],
        eval_dataset=data["eval"],
        evaluators=data["evaluators"],
        processing_class=tokenizer,
    )
    trainer.train()
    return trainer


def main(data_args: DataArguments, args: DemoArguments) -> RobustnessReport:
    torch.manual_seed(args.seed)
    started = time.time()
    timings = {}
    model_path = default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    untouched = AutoModelForCausalLM.from_pretrained(model_path)
    build = python_scenario if args.scenario == "python" else facts_scenario
    data = build(data_args, args, tokenizer, untouched)

    print("\n== 1/3 MUDMAN unlearning ==", flush=True)
    phase = time.time()
    model = AutoModelForCausalLM.from_pretrained(model_path)
    config = UnlearnConfig(
        output_dir=str(Path(args.output_dir) / args.scenario / "unlearn"),
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
    attacks = {"mudman": attack(model, tokenizer, data, args, "mudman")}
    timings["attack_mudman_s"] = time.time() - phase

    print("\n== 3/3 relearning attack on the untouched model (no-unlearning baseline) ==", flush=True)
    phase = time.time()
    attacks["no_unlearning"] = attack(untouched, tokenizer, data, args, "no_unlearning")
    timings["attack_no_unlearning_s"] = time.time() - phase
    timings["total_s"] = time.time() - started

    title = {"python": "MUDMAN on SmolLM2-135M: forget Python source", "facts": "MUDMAN on SmolLM2-135M: forget world capitals"}
    details = {"model": str(model_path), "demo": asdict(args), "timings_s": timings, **data["details"]}
    report = RobustnessReport.from_attacks(title[args.scenario], attacks, details=details)
    paths = report.save(Path(args.output_dir) / args.scenario)
    print("\n" + report.to_markdown())
    print(f"wall time: {timings['total_s'] / 60:.1f} min; report: {paths['markdown']}, {paths['json']}, {paths['plot']}")
    return report


if __name__ == "__main__":
    parser = HfArgumentParser((DataArguments, DemoArguments))
    parser.set_defaults(**DEMO_DATA_DEFAULTS)
    main(*parser.parse_args_into_dataclasses())
