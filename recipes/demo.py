"""The default demo (`make demo`): MUDMAN on the embedded SmolLM2-135M-Instruct, then an attack suite.

Two scenarios, each ending in a RobustnessReport (JSON, markdown, PNG of the attack curves):

- ``code`` (default): forget Python source of the standard library (the MUDMAN paper's Python
  experiment, offline), keep English prose of the standard library's pydoc help topics. The
  forget modules are split 50/25/25 into unlearn / attack / eval *by module* and then cut into
  64-token chunks, so the attack fine-tunes on files that are never evaluated and the held-out
  loss is measured on files nothing trained on. The attacker's best point is the lowest held-out
  forget loss.
- ``facts`` (`make demo SCENARIO=facts`): forget the world capitals the model knows, with the
  protocol of Deeb & Roger: unlearn all of them, attack on half (A), measure the other half (B).
  The attacker's best point is the highest accuracy on B.

The same attack suite (``--attack_suite``, default ``quick``; ``standard`` for the README's
figures) runs on the unlearned model and on an untouched copy (the no-unlearning baseline), each
attack on a fresh copy; the report gives the attacker's best over the suite.

    python recipes/demo.py [--scenario facts] [--attack_suite standard] [--unlearn_steps 30 ...]
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser

from hf_unlearn import AttackSuite, MUDMANConfig
from hf_unlearn.attacks import PRESETS
from hf_unlearn.data import DataArguments
from hf_unlearn.data.facts import world_capitals
from hf_unlearn.evaluation import RobustnessReport
from hf_unlearn.forward import weights_digest
from hf_unlearn.model_card import REPORT_NAME
from hf_unlearn.models import load_model
from hf_unlearn.pipeline import robustness_report, unlearn
from hf_unlearn.scenarios import code_scenario, facts_scenario

# The code scenario's data: a sample of 60 standard-library modules is plenty for the steps it runs; 64-token
# chunks, as MUDMAN's settings below were tuned on.
DEMO_DATA_DEFAULTS = {"max_forget_documents": 60, "max_eval_examples": 32, "chunk_length": 64}
# MUDMAN's settings per scenario: the best of the quality benchmark's study on that scenario's tuning split
# (10 settings, attacker's best over LoRA and AdamW, 30 loops of 4 x 64 tokens, within the disruption budget;
# benchmarks/results/quality/<scenario>/mudman/sweep/best.yaml), rounded to two digits.
TUNED = {
    "code": {"unlearning_rate": 1.9e-4, "adv_lr": 5.8e-4, "retaining_rate": 8.4e-4},
    "facts": {"unlearning_rate": 9.2e-5, "adv_lr": 2.7e-4, "retaining_rate": 2.3e-4},
}


@dataclass
class DemoArguments:
    scenario: str = field(default="code", metadata={"help": "code (Python source vs prose) or facts (world capitals)."})
    output_dir: str = field(default="outputs/demo", metadata={"help": "Reports and runs go to <output_dir>/<scenario>."})
    batch_size: int = field(default=4, metadata={"help": "Examples per step, unlearning and attacks alike."})
    unlearn_steps: int = field(default=30, metadata={"help": "MUDMAN loops (the tuned settings were found at 30)."})
    unlearning_rate: float | None = field(default=None, metadata={"help": "MUDMAN unlearning_rate (default: the scenario's tuned one)."})
    retaining_rate: float | None = field(default=None, metadata={"help": "MUDMAN retaining_rate (default: the scenario's tuned one)."})
    adv_lr: float | None = field(default=None, metadata={"help": "MUDMAN adv_lr (default: the scenario's tuned one)."})
    fork_every_n_loops: int = field(default=32, metadata={"help": "MUDMAN fork_every_n_loops (published; fixed while tuning)."})
    attack_suite: str = field(default="quick", metadata={"help": f"Attack suite preset: {', '.join(PRESETS)}."})
    attack_steps: int | None = field(default=None, metadata={"help": "Steps of every attack (default: the preset's)."})
    eval_every: int = field(default=10, metadata={"help": "Attack steps between evaluations."})
    max_countries: int = field(default=120, metadata={"help": "facts: capitals of this many most populous countries."})
    seed: int = field(default=42, metadata={"help": "Seed of sampling and training."})
    resume: bool = field(default=True, metadata={"help": "Read back finished attacks (same weights, data and settings) instead of rerunning them."})

    def __post_init__(self):
        if self.scenario not in ("code", "facts"):
            raise ValueError(f"scenario={self.scenario!r} is invalid: use 'code' or 'facts'")
        if self.attack_suite not in PRESETS:
            raise ValueError(f"attack_suite={self.attack_suite!r} is invalid: use one of {', '.join(PRESETS)}")
        for name, value in TUNED[self.scenario].items():
            if getattr(self, name) is None:
                setattr(self, name, value)


def main(data_args: DataArguments, args: DemoArguments) -> RobustnessReport:
    torch.manual_seed(args.seed)
    started = time.time()
    timings = {}
    model_path, untouched, tokenizer = load_model("embedded")
    if args.scenario == "code":
        data_args.max_unlearn_examples = args.batch_size * args.unlearn_steps  # MUDMAN never sees a chunk twice
        data = code_scenario(data_args, tokenizer)
    else:
        data = facts_scenario(
            untouched, tokenizer, world_capitals(args.max_countries), retain_source=data_args.retain_source,
            chunk_length=data_args.chunk_length, max_eval_examples=data_args.max_eval_examples, seed=data_args.split_seed,
        )  # fmt: skip

    print("\n== 1/2 MUDMAN unlearning ==", flush=True)
    phase = time.time()
    model = load_model(model_path)[1]
    config = MUDMANConfig(
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
    trainer = unlearn(model, config, data, tokenizer)
    timings["unlearn_s"] = time.time() - phase

    print(f"\n== 2/2 attack suite {args.attack_suite!r} on the unlearned and on the untouched model ==", flush=True)
    phase = time.time()
    overrides = {} if args.attack_steps is None else {"max_steps": args.attack_steps}
    suite = AttackSuite.preset(
        args.attack_suite, output_dir=str(Path(args.output_dir) / args.scenario / "attacks"),
        per_device_train_batch_size=args.batch_size, eval_steps=args.eval_every, metric_for_best_model=data.best_metric,
        seed=args.seed, **overrides,
    )  # fmt: skip
    title = {"code": "MUDMAN on SmolLM2-135M: forget Python source", "facts": "MUDMAN on SmolLM2-135M: forget world capitals"}
    details = {"model": str(model_path), "model_weights": weights_digest(trainer.model).hexdigest(), "demo": asdict(args),
               "timings_s": timings, "data": asdict(data_args), **data.details}  # fmt: skip
    report = robustness_report(
        title[args.scenario], {"mudman": model, "no_unlearning": untouched}, suite, attack_dataset=data.attack,
        eval_dataset=data.eval, evaluators=data.evaluators, retain_dataset=data.retain, processing_class=tokenizer,
        details=details, resume=args.resume,
    )  # fmt: skip
    timings["attack_suites_s"] = time.time() - phase
    timings["total_s"] = time.time() - started
    paths = report.save(Path(args.output_dir) / args.scenario)
    # The unlearned model, as it would go to the Hub: its card says what was forgotten and how robustly.
    model_dir = Path(config.output_dir)
    trainer.save_model(str(model_dir))
    report.save(model_dir, REPORT_NAME)
    trainer.create_model_card()
    print("\n" + report.to_markdown())
    print(f"wall time: {timings['total_s'] / 60:.1f} min; report: {paths['markdown']}, {paths['json']}, {paths['plot']}")
    print(f"the unlearned model and its card: {model_dir} (README.md); push it with `huggingface-cli upload <repo> {model_dir}`")
    return report


if __name__ == "__main__":
    parser = HfArgumentParser((DataArguments, DemoArguments))
    parser.set_defaults(**DEMO_DATA_DEFAULTS)
    main(*parser.parse_args_into_dataclasses())
