"""Benchmark: how robustly every method unlearns, each tuned the same way, at equal compute.

Two scenarios on the embedded SmolLM2-135M, offline (``hf_unlearn.scenarios``):

- ``code`` (the MUDMAN paper's SmolLM / Python experiment): forget standard-library Python, retain
  English prose; disruption = loss on held-out prose above its start, at most ``--budget_nats``; the
  metric is the held-out forget loss at the attacker's best (higher is more robust).
- ``facts`` (Deeb & Roger): the capitals the model knows, attack on split A, split-B accuracy at the
  attacker's best (lower is more robust); disruption +``--budget_relative`` on held-out Python source.
- ``fictitious``: the same protocol on 40 facts about entities that do not exist, unlearned from the *target*
  (SmolLM2 fine-tuned on them and on 40 retain facts, ``benchmarks/oracle.py``); the *oracle* (fine-tuned on the
  retain facts only) is a row, attacked like the others: the floor perfect unlearning reaches. Retain-facts
  accuracy, never trained on while unlearning, is reported beside the general-text disruption. Its studies search each
  method's step size about 10x its published value (``STEP_SIZE_FACTOR`` says why).

Every method is tuned by the same sweep (``hf_unlearn.sweep``): ``trials`` Optuna trials, the first at
the method's published settings (its registration's ``search_space_source``), at most three settings searched about a
decade either side of them, the ``quick`` attack suite, the same pass budget of forward+backward
passes, on a tuning split (code: the tuning half of the forget documents; facts: one A/B partition).
Then its best settings are run on held-out data (code: the test half; facts: another partition)
with a fresh seed, in fp32, and attacked with the ``standard`` suite. ``no_unlearning`` is the
untouched model under the same attacks.

The code and facts trials ran under bf16 autocast (fp32 weights, so no update is rounded away): 1.9x faster per
trial where that was measured, loss within 0.0015 nats of fp32 (median; docs/results.md, "Quality benchmark", gives
the measurement). The fictitious scenario's trials run in fp32: on a CPU without bf16 units (the AVX2-only AMD EPYC
of some of this project's sessions) torch emulates bf16, and a training step was 13x slower under autocast
(``hf_unlearn.environment.cpu_has_bf16_units``). Held-out evaluations run in fp32.

Resumable, and its state is committed: the studies (SQLite), every finished trial's attack results
and every finished evaluation (JSON), never weights, live in ``benchmarks/results/quality/`` (the
default scale), so a rerun on any clone computes only what is missing. ``settings.json`` there records
what the state was computed with; a rerun with other settings is refused, naming what changed.
Run one worker per scenario, single-threaded, side by side (``--scenarios code --threads 1`` and
``--scenarios facts --threads 1``): the table collects both. Writes ``quality.json``, ``quality.md``
and ``quality.png`` from whatever is finished.

    python benchmarks/quality.py --quick --output_dir outputs/benchmarks/quality_quick   # smoke run
    nice python benchmarks/quality.py --scenarios code --threads 1 &     # the default scale, two workers
    nice python benchmarks/quality.py --scenarios facts --threads 1 &
    python benchmarks/quality.py --report                                # the table from the state, no compute
    python benchmarks/quality.py --scale extended                        # + SimNPO, RMU, Circuit Breakers, NPO combinations
    bash benchmarks/gpu/paper.sh                                         # --scale paper: the MUDMAN paper's experiment (a GPU)
    python benchmarks/quality.py --attempts mudman_10x_passes            # an attempt at a missed target (ATTEMPTS), once tuned

Attempts (``--attempts``) are not part of the comparison: each runs a tuned method's best settings for more passes
or to a larger disruption budget (ATTEMPTS says which and why), on the held-out data, stopping at the first
evaluation beyond the budget with the last weights within it, attacked by the evaluation suite. Their table
follows the comparison's, against the same untouched-model row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_unlearn import AttackSuite, get_method
from hf_unlearn.attacks import PRESETS
from hf_unlearn.callbacks import DisruptionBudgetCallback
from hf_unlearn.data import DataArguments, us_state_capitals
from hf_unlearn.data.fictitious import oracle_models
from hf_unlearn.environment import environment
from hf_unlearn.evaluation.report import finite_or_null
from hf_unlearn.model_card import saved_weights_digest
from hf_unlearn.models import resolve_model_name_or_path
from hf_unlearn.pipeline import attack, unlearn
from hf_unlearn.sweep import SweepArguments, around, build_scenario, distinct_finished, run_sweep

# Bump when a change of this benchmark's code changes results that its settings do not show.
STATE_VERSION = 1
_MUDMAN = get_method("mudman").search_space
# name: (method, fixed settings, search space). The ablations reuse MUDMAN's space, less what they switch off.
# The attacks of a trial: quick's two fine-tuning attacks, those the studies began with (the sweep recognises
# studies recorded before suites were, as having run these). quick's 4-bit attack came later: added to a study
# in progress, it would change the objective between its trials. The held-out evaluations run every attack of
# their suite, those that train nothing included.
TUNING_ATTACKS = ["lora_1e-3", "adamw_1e-4"]
METHODS = {
    "mudman": ("mudman", {}, _MUDMAN),
    "mudman_no_masking": ("mudman", {"disruption_masking": False}, _MUDMAN),
    # Unnormalized, the step is the rate times the gradient, whose global norm is ~1.2 on SmolLM2's gate_proj
    # (measured): 0.1 gives about MUDMAN's published step. No published value.
    "mudman_no_normalization": ("mudman", {"normalize_unlearning_grad": False}, {**_MUDMAN, "unlearning_rate": around(0.1)}),
    "mudman_no_meta_learning": ("mudman", {"meta_learning": False}, {k: v for k, v in _MUDMAN.items() if k != "adv_lr"}),
    "tar": ("tar", {}, get_method("tar").search_space),
    "graddiff": ("graddiff", {}, get_method("graddiff").search_space),
    "npo": ("npo", {}, get_method("npo").search_space),
    "cir": ("cir", {}, get_method("cir").search_space),
    "simnpo": ("simnpo", {}, get_method("simnpo").search_space),
    "rmu": ("rmu", {}, get_method("rmu").search_space),
    "circuit_breakers": ("circuit_breakers", {}, get_method("circuit_breakers").search_space),
    # Combinations no other library offers: NPO's objective with MUDMAN's components.
    "npo_masking": ("npo", {"disruption_masking": True, "retain_momentum": 0.9}, get_method("npo").search_space),
    "npo_meta_masked_normalized": (
        "npo", {"meta_learning": True, "disruption_masking": True, "normalize_unlearning_grad": True, "retain_momentum": 0.9},
        {"learning_rate": get_method("npo").search_space["learning_rate"], "npo_beta": get_method("npo").search_space["npo_beta"], "adv_lr": _MUDMAN["adv_lr"]},
    ),  # fmt: skip
}
CORE = ["mudman", "mudman_no_masking", "mudman_no_normalization", "mudman_no_meta_learning", "tar", "graddiff", "npo", "cir"]
# bf16_trials: the scenarios whose trials run under bf16 autocast (the module's docstring says why not all).
_DEFAULT = dict(trials=10, tokens=64, batch_size=4, pass_budget=120, tune_attack_steps=20, eval_attack_steps=30, eval_suite="standard",
                methods=CORE, max_countries=120, eval_examples=16, unlearn_eval_steps=10, attack_eval_steps=5, bf16_trials=["code", "facts"])  # fmt: skip
SCALES = {
    "quick": {**_DEFAULT, "trials": 1, "pass_budget": 24, "tune_attack_steps": 6, "eval_attack_steps": 10, "eval_suite": "quick",
              "methods": ["mudman", "graddiff", "cir"], "max_countries": 60, "eval_examples": 8, "unlearn_eval_steps": 5},
    "default": _DEFAULT,
    "extended": {**_DEFAULT, "methods": list(METHODS)},
    # The MUDMAN paper's SmolLM experiment on one GPU lease (benchmarks/gpu/paper.sh, --scenarios code): MUDMAN against
    # TAR-style at its batches (16 x 100 tokens) and 300 loops (1200 passes), the attacks at their presets' steps.
    # Sized for ~7 minutes of an H200 by estimate (docs/gpu.md); --time_limit_minutes bounds it, the state continues.
    "paper": {**_DEFAULT, "trials": 4, "tokens": 100, "batch_size": 16, "pass_budget": 1200, "tune_attack_steps": None,
              "eval_attack_steps": None, "methods": ["mudman", "tar"], "eval_examples": 64, "attack_eval_steps": 10, "bf16_trials": []},
}  # fmt: skip


class Attempt(NamedTuple):  # not a dataclass: other benchmarks and the tests load this file without registering it
    """A tuned method run beyond the comparison's terms: ``pass_factor`` times its pass budget, to ``budget_factor``
    times the disruption budget, stopping at the first evaluation beyond that."""

    name: str  # a METHODS name whose study is finished
    why: str
    pass_factor: int = 1
    budget_factor: float = 1.0


# What the missed targets suggested trying: the MUDMAN paper's loop count (300 loops of MUDMAN = 10x the
# pass budget), CIR for more epochs and at a larger disruption budget.
ATTEMPTS = {
    "mudman_10x_passes": Attempt("mudman", "the MUDMAN paper's 300 loops: 10x the pass budget", pass_factor=10),
    "tar_10x_passes": Attempt("tar", "TAR-style at MUDMAN's 300 loops, its comparison point", pass_factor=10),
    "cir_10x_passes": Attempt("cir", "CIR for more epochs: 10x the pass budget", pass_factor=10),
    "cir_10x_passes_10x_budget": Attempt("cir", "CIR for more epochs, to 10x the disruption budget", pass_factor=10, budget_factor=10),
}
# Settings that may change between runs on one state: which studies run, how many trials they run to.
RESUMABLE = ("methods", "trials")
RESULTS = Path(__file__).resolve().parent / "results" / "quality"
# README carries the default scale's tables between these lines, as `--report` prints them (tests/test_quality_benchmark.py
# keeps the two equal); `--update_readme` rewrites them.
README = Path(__file__).resolve().parents[1] / "README.md"
README_TABLES = ("<!-- quality tables: written by `python benchmarks/quality.py --report --update_readme` -->", "<!-- end of quality tables -->")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(SCALES), default="default")
    parser.add_argument("--quick", action="store_true", help="the quick scale: a smoke run")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=["code", "facts"])
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=None, help="default: the scale's")
    parser.add_argument("--budget_nats", type=float, default=0.05, help="code: disruption budget (MUDMAN's +0.05 nats)")
    parser.add_argument("--budget_relative", type=float, default=0.001, help="facts: disruption budget (CIR's +0.1 %%)")
    parser.add_argument("--output_dir", default=None, help="default: benchmarks/results/quality (default and extended scales), "
                        "benchmarks/results/quality_paper (paper), outputs/benchmarks/quality_quick (quick)")  # fmt: skip
    parser.add_argument("--model", default=None, help="the model (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of this worker (default: torch's)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--report", action="store_true", help="write and print the table from the state; compute nothing")
    parser.add_argument("--update_readme", action="store_true", help="also put the table into README.md (between its quality-table lines)")
    parser.add_argument("--time_limit_minutes", type=float, default=None, help="start no trial or evaluation after this long; "
                        "the state keeps what finished and the same command continues (a GPU lease's single run)")  # fmt: skip
    parser.add_argument("--attempts", nargs="+", choices=sorted(ATTEMPTS), default=[], help="run these attempts (after their method's study) "
                        "instead of the comparison")  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        args.scale = "quick"
    args.deadline = None if args.time_limit_minutes is None else time.time() + 60 * args.time_limit_minutes
    if args.output_dir is None:
        committed = {"default": RESULTS, "extended": RESULTS, "paper": RESULTS.with_name("quality_paper")}  # GPU leases continue it
        args.output_dir = str(committed[args.scale]) if args.scale in committed else f"outputs/benchmarks/quality_{args.scale}"
    if args.update_readme:
        if args.scale != "default" or Path(args.output_dir).resolve() != RESULTS:
            parser.error("--update_readme: README carries the default scale's committed state; drop --scale, --quick and --output_dir")
        readme_span(README.read_text())  # before any computing: README must have the lines the tables go between
    return args


def state_settings(args: argparse.Namespace) -> dict:
    """What the state in ``output_dir`` depends on (beyond each study's own settings, which the sweep checks)."""
    scale = {k: v for k, v in SCALES[args.scale].items() if k not in RESUMABLE}
    packages = environment(devices=False)["packages"]
    return {"state_version": STATE_VERSION, "scale": scale, "budget_nats": args.budget_nats, "budget_relative": args.budget_relative,
            "seed": args.seed, "model": args.model or "embedded", "packages": {k: packages[k] for k in ("torch", "transformers")}}  # fmt: skip


def check_state(args: argparse.Namespace) -> None:
    """Record the settings of a new state; refuse a state written with other settings, naming what changed."""
    path = Path(args.output_dir) / "settings.json"
    settings = json.loads(json.dumps(state_settings(args)))
    if not path.is_file():
        write_json(path, settings)
        return
    stored = json.loads(path.read_text())
    changed = sorted(
        f"{key}: {json.dumps(stored.get(key))} -> {json.dumps(settings.get(key))}"
        for key in stored.keys() | settings.keys()
        if stored.get(key) != settings.get(key)
    )
    if changed:
        sys.exit(
            f"{args.output_dir} holds results computed with other settings, which new results must not be mixed with:\n  "
            + "\n  ".join(changed)
            + f"\nRerun with the settings above, or give another --output_dir (or delete {path.parent} to start over)."
        )


# The fictitious facts were trained in at 2e-4 for 7 epochs (benchmarks/oracle.py), 10-20x the published unlearning
# rates: at the published step sizes a decade either side nothing moved them (the first studies, measured: MUDMAN's 10
# settings up to 7.4e-5 and GradDiff's first two (1e-5, 1.7e-6) all kept split-B accuracy 1.00 through the attacks; the largest
# MUDMAN rate moved its loss only from 0.09 to 0.13). A comparison at equal disruption needs ranges that can spend the
# budget: there every study searches a decade either side of this factor times its published step size (the method's
# ``step_size_setting``; its other settings as everywhere), the first trial at that product.
STEP_SIZE_FACTOR = {"fictitious": 10}


def search_space(name: str, scenario: str) -> dict[str, dict]:
    """The search space of ``name``'s studies on ``scenario``: METHODS' space, its step size moved by STEP_SIZE_FACTOR."""
    method, _, space = METHODS[name]
    factor = STEP_SIZE_FACTOR.get(scenario, 1)
    if factor == 1:
        return space
    step_size = get_method(method).step_size_setting
    return {**space, step_size: around(space[step_size]["published"] * factor)}


def sweep_arguments(args: argparse.Namespace, scale: dict, name: str, scenario: str) -> SweepArguments:
    method, fixed, _ = METHODS[name]
    space = search_space(name, scenario)
    cir_fixed = {"per_device_train_batch_size": scale["batch_size"], "retain_batch_size": None} if method == "cir" else {}  # equal batches
    return SweepArguments(
        method=method, scenario=scenario, search_space=space, fixed={**fixed, **cir_fixed}, n_trials=scale["trials"],
        disruption_budget=args.budget_nats if scenario == "code" else args.budget_relative,
        disruption_unit="nats" if scenario == "code" else "relative", pass_budget=scale["pass_budget"], attack_suite="quick",
        attacks=TUNING_ATTACKS,
        attack_steps=scale["tune_attack_steps"], eval_steps=scale["unlearn_eval_steps"], attack_eval_steps=scale["attack_eval_steps"],
        batch_size=scale["batch_size"], max_countries=scale["max_countries"], bf16=scenario in scale["bf16_trials"],
        output_dir=str(Path(args.output_dir) / scenario / name / "sweep"), study_name=f"{name}-{scenario}", seed=args.seed,
    )  # fmt: skip


# CIR's first epoch only collects statistics: on the code scenario's unlearn split (hundreds of chunks) the pass
# budget never left it, and CIR changed nothing (measured: 40 steps, all in epoch 0). It unlearns a sample of 16
# chunks instead: 4 steps an epoch, and at its 5 passes a step (measured: 24 steps in 120 passes) six epochs, five
# of them updating (its authors' regime: many epochs over a small forget set). The evaluation sets are everyone's.
CIR_UNLEARN_EXAMPLES = 16


def data_arguments(scale: dict, pool: str, split_seed: int, name: str | None = None) -> DataArguments:
    cir = name in METHODS and METHODS[name][0] == "cir"
    return DataArguments(chunk_length=scale["tokens"], max_eval_examples=scale["eval_examples"], forget_pool=pool, split_seed=split_seed,
                         max_forget_documents=120, max_unlearn_examples=CIR_UNLEARN_EXAMPLES if cir else None)  # fmt: skip


METRICS = {"code": "forget_loss", "facts": "facts_accuracy", "fictitious": "facts_accuracy"}
SCENARIOS = list(METRICS)
# The fictitious scenario's target and oracle (benchmarks/oracle.py --seed FICTITIOUS_SEED).
FICTITIOUS_SEED = 0


def model_path(args: argparse.Namespace, scenario: str, name: str | None = None) -> str | None:
    """The model ``scenario`` starts from, as ``--model`` gives it (None: the embedded SmolLM2; fictitious: the target),
    or the oracle for the ``oracle`` row."""
    if scenario != "fictitious":
        return args.model
    return str(oracle_models(FICTITIOUS_SEED)["oracle" if name == "oracle" else "target"])


def model_digest(args: argparse.Namespace, scenario: str, name: str) -> str | None:
    """The digest of the saved weights a fictitious row starts from (None for the others, whose model is fixed): the
    target and the oracle are rebuilt when their cache is gone, and a rebuild on another machine differs slightly, so
    an evaluation of an earlier build is evaluated again."""
    return saved_weights_digest(model_path(args, scenario, name)) if scenario == "fictitious" else None


def untuned_rows(scenario: str) -> list[str]:
    """The rows attacked as they are, without unlearning: the untouched model, and the oracle where one exists."""
    return ["no_unlearning", "oracle"] if scenario == "fictitious" else ["no_unlearning"]

# Facts the methods are evaluated on beyond the capitals' held-out partition: fact sets tuning never saw.
UNSEEN_FACT_SETS = {"us_state_capitals": us_state_capitals}


def evaluation_path(args: argparse.Namespace, scenario: str, name: str, fact_set: str | None = None) -> Path:
    return Path(args.output_dir) / scenario / name / (f"evaluation_{fact_set}.json" if fact_set else "evaluation.json")


def evaluations(scenario: str) -> list[str | None]:
    """The held-out evaluations of a scenario: None (its own held-out data), then each unseen fact set (facts only)."""
    return [None, *UNSEEN_FACT_SETS] if scenario == "facts" else [None]


def attempt_path(args: argparse.Namespace, scenario: str, attempt: str) -> Path:
    return Path(args.output_dir) / scenario / "attempts" / attempt / "evaluation.json"


def attempt_settings(args: argparse.Namespace, scale: dict, scenario: str, attempt: Attempt) -> dict:
    """The config overrides of ``attempt``: its pass budget, and a stop at its disruption budget. The stop reads the
    held-out general text (the evaluation's retain set; the forget metric never chooses the weights kept)."""
    passes = scale["pass_budget"] * attempt.pass_factor
    budget = (args.budget_nats if scenario == "code" else args.budget_relative) * attempt.budget_factor
    return dict(max_steps=passes, max_passes=passes, eval_strategy="steps", eval_steps=scale["unlearn_eval_steps"], eval_on_start=True,
                disruption_budget=budget, disruption_unit="nats" if scenario == "code" else "relative")  # fmt: skip


def attempt_record(args: argparse.Namespace, scale: dict, scenario: str, key: str) -> dict:
    """What an attempt's evaluation records of it: its name, method, reason, factors and config overrides."""
    attempt = ATTEMPTS[key]
    return json.loads(json.dumps({"name": key, "method": attempt.name, "why": attempt.why, "pass_factor": attempt.pass_factor,
                                  "budget_factor": attempt.budget_factor, **attempt_settings(args, scale, scenario, attempt)}))  # fmt: skip


def evaluate(
    args: argparse.Namespace, scale: dict, name: str, scenario: str, best: dict | None, fact_set: str | None = None,
    attacks: list[str] | None = None, attempt: str | None = None,
) -> dict:  # fmt: skip
    """The method at its tuned settings on held-out data (or on the unseen ``fact_set``), a fresh seed, in fp32,
    attacked by the evaluation suite; with ``attempt``, run as ATTEMPTS[attempt] says.

    The attacks' results are kept beside ``evaluation.json`` (without weights): an evaluation cut short
    recomputes its (deterministic) unlearning, then reads its finished attacks back. ``attacks``: only these of the
    suite (``benchmarks/no_training_attacks.py``)."""
    path = attempt_path(args, scenario, attempt) if attempt else evaluation_path(args, scenario, name, fact_set)
    if best is not None and "best_params" not in best:  # every trial pruned or failed: no tuned settings to evaluate
        evaluation = {"name": name, "scenario": scenario, "fact_set": fact_set, "metric": METRICS[scenario], "after_unlearning": None,
                      "attack_best": None, "all_diverged": False, "settings": None,
                      "tuning": {k: best[k] for k in ("trials", "distinct_settings") if k in best}}  # fmt: skip
        write_json(path, evaluation)
        return evaluation
    scenario_data, tokenizer, seed = held_out_scenario(args, scale, name, scenario, fact_set)
    model = AutoModelForCausalLM.from_pretrained(resolve_model_name_or_path(model_path(args, scenario, name)), dtype=torch.float32)
    started, unlearning = time.time(), {}
    if name not in untuned_rows(scenario):
        overrides = attempt_settings(args, scale, scenario, ATTEMPTS[attempt]) if attempt else {}
        with tempfile.TemporaryDirectory() as scratch:  # the budget stop saves weights: never into the committed state
            config = held_out_config(name, scale, sweep_arguments(args, scale, name, scenario).fixed, best["best_params"], scratch if attempt else str(path.parent / "unlearn"), seed, overrides)
            trainer = unlearn(model, config, scenario_data, tokenizer)
        model = trainer.model
        unlearning = {"steps": trainer.state.global_step, "passes": trainer.procedure.passes, "seconds": time.time() - started}
        stop = next((c for c in trainer.callback_handler.callbacks if isinstance(c, DisruptionBudgetCallback)), None)
        if attempt and stop is not None:  # where the budget stopped it, and the step whose weights it kept
            unlearning["beyond_budget_at"] = stop.exceeded_at
            unlearning["kept_step"] = stop.within_budget["step"] if stop.exceeded_at and stop.within_budget else unlearning["steps"]
    suite = evaluation_suite(scale, path.parent / ("attacks" if fact_set is None else f"attacks_{fact_set}"), scenario_data.best_metric, seed, attacks)
    result = attack(model, suite, scenario_data, tokenizer, resume=True)
    metric = scenario_data.best_metric.removeprefix("eval_")
    evaluation = {
        "name": name, "scenario": scenario, "fact_set": fact_set or ("world_capitals" if scenario == "facts" else None), "metric": metric, "after_unlearning": result.start_point, "all_diverged": result.all_diverged,
        "attack_best": None if result.all_diverged else result.best_point(), "settings": best["best_params"] if best else {},
        "tuning": {k: best[k] for k in ("best_value", "top_k_mean", "top_k_sem", "trials", "distinct_settings") if k in best} if best else {},
        "unlearning": unlearning, "attacks": result.to_dict(), "seconds": time.time() - started, "model_sha256": model_digest(args, scenario, name),
        **({"attempt": attempt_record(args, scale, scenario, attempt)} if attempt else {}),
    }  # fmt: skip
    write_json(path, finite_or_null(evaluation))
    return evaluation


def evaluation_suite(scale: dict, output_dir: Path, metric: str, seed: int, attacks: list[str] | None = None) -> AttackSuite:
    """The attacks of every held-out evaluation (``attacks``: only these of them), their results kept in ``output_dir``."""
    overrides = {} if scale["eval_attack_steps"] is None else {"max_steps": scale["eval_attack_steps"]}
    return AttackSuite.preset(
        scale["eval_suite"], output_dir=str(output_dir), per_device_train_batch_size=scale["batch_size"], eval_steps=10,
        metric_for_best_model=metric, seed=seed, disable_tqdm=True, names=attacks, **overrides,
    )  # fmt: skip


def held_out_scenario(args: argparse.Namespace, scale: dict, name: str, scenario: str, fact_set: str | None = None) -> tuple[Any, Any, int]:
    """What ``name``'s held-out evaluation runs on: the scenario's test data (or the unseen ``fact_set``), its tokenizer,
    and the evaluation's fresh seed."""
    seed = args.seed + 1000  # fresh
    start_path = resolve_model_name_or_path(model_path(args, scenario))
    tokenizer = AutoTokenizer.from_pretrained(start_path)
    sweep_args = replace(sweep_arguments(args, scale, name if name in METHODS else "mudman", scenario), seed=seed)
    facts = UNSEEN_FACT_SETS[fact_set]() if fact_set else None
    untouched = AutoModelForCausalLM.from_pretrained(start_path, dtype=torch.float32)  # decides the facts it knows
    return build_scenario(sweep_args, data_arguments(scale, "test", seed, name), untouched, tokenizer, facts), tokenizer, seed


def seconds_left(args: argparse.Namespace) -> float | None:
    """Until ``--time_limit_minutes`` is up (None: no limit); printed once when it is."""
    if args.deadline is None:
        return None
    left = args.deadline - time.time()
    if left <= 0:
        print(f"--time_limit_minutes {args.time_limit_minutes:g} is up: the state keeps what finished; the same command continues", flush=True)
    return left


def out_of_time(args: argparse.Namespace) -> bool:
    left = seconds_left(args)
    return left is not None and left <= 0


def write_json(path: Path, content: dict) -> None:
    write_text(path, json.dumps(content, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write atomically: two workers may write the same summary, and a kill must never leave half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(text)
    temporary.replace(path)


def run(args: argparse.Namespace) -> None:
    scale = SCALES[args.scale]
    names = args.methods or scale["methods"]
    for scenario in args.scenarios:
        for name in [*untuned_rows(scenario), *names]:
            paths = {fact_set: evaluation_path(args, scenario, name, fact_set) for fact_set in evaluations(scenario)}
            tuned = None if name in untuned_rows(scenario) else sweep_arguments(args, scale, name, scenario)
            if tuned is not None and any(tuned_with(path, tuned) < scale["trials"] for path in paths.values() if path.is_file()):
                for path in paths.values():  # more trials asked for: re-tune (the study resumes), then re-evaluate
                    path.unlink(missing_ok=True)
            for path in paths.values():
                if path.is_file() and (lacks_attacks(path, scale) or json.loads(path.read_text()).get("model_sha256") != model_digest(args, scenario, name)):
                    path.unlink()
            missing = [fact_set for fact_set, path in paths.items() if not path.is_file()]
            if not missing:
                continue
            if out_of_time(args):
                return
            best = None
            if tuned is not None:
                best = run_sweep(replace(tuned, timeout_s=seconds_left(args)), data_arguments(scale, "tuning", args.seed, name), model_path(args, scenario))
            for fact_set in missing:
                if out_of_time(args):  # a study cut short by the limit is evaluated only once it is finished
                    return
                evaluate(args, scale, name, scenario, best, fact_set)
                write(args)


def held_out_config(name: str, scale: dict, fixed: dict, tuned: dict, output_dir: str, seed: int, overrides: dict | None = None) -> Any:
    """The method's config for its held-out evaluation: the tuned settings on its fixed ones, for the whole pass budget
    as its trials ran (no evaluations, so no budget stop: trials beyond the budget were pruned, never stopped);
    ``overrides``: an attempt's."""
    run = dict(
        output_dir=output_dir, max_steps=scale["pass_budget"], max_passes=scale["pass_budget"], per_device_train_batch_size=scale["batch_size"],
        eval_strategy="no", eval_on_start=False, save_strategy="no", report_to="none", seed=seed, disable_tqdm=True, disruption_budget=None,
    )  # fmt: skip
    return get_method(METHODS[name][0]).config(**{**fixed, **tuned, **run, **(overrides or {})})


def run_attempts(args: argparse.Namespace) -> None:
    """Each of ``args.attempts`` not yet evaluated, at its method's tuned settings (read from its finished evaluation)."""
    scale = SCALES[args.scale]
    for scenario in args.scenarios:
        for key in args.attempts:
            attempt = ATTEMPTS[key]
            base, path = evaluation_path(args, scenario, attempt.name), attempt_path(args, scenario, key)
            tuned = json.loads(base.read_text()) if base.is_file() else {}
            if path.is_file():
                done = json.loads(path.read_text())
                if done.get("settings") == tuned.get("settings") and done.get("attempt") == attempt_record(args, scale, scenario, key) \
                        and not lacks_attacks(path, scale):  # fmt: skip
                    continue
                path.unlink()  # its method was re-tuned, the attempt or the suite changed: redone (finished attacks read back)
            if not tuned.get("settings"):
                print(f"{scenario}/{key}: skipped, {attempt.name} has no tuned settings yet (run the comparison first: {base} "
                      f"{'has none within the budget' if base.is_file() else 'is missing'})", flush=True)  # fmt: skip
                continue
            if out_of_time(args):
                return
            evaluate(args, scale, attempt.name, scenario, {"best_params": tuned["settings"], **tuned["tuning"]}, attempt=key)
            write(args)


def lacks_attacks(path: Path, scale: dict) -> bool:
    """The evaluation ran without some attack of its suite (one added to the preset since): it is redone, its
    finished attacks read back from their saved results."""
    attacks = json.loads(path.read_text()).get("attacks")
    return attacks is not None and not set(PRESETS[scale["eval_suite"]]) <= set(attacks["attacks"])


def tuned_with(path: Path, sweep_args: SweepArguments) -> int:
    """The finished trials of distinct settings behind an evaluation's settings. Evaluations tuned before sweeps
    counted distinct settings hold only finished trials: their study says how many were distinct (a study resumed
    by older code replayed its sampler's draws, repeating finished settings)."""
    tuning = json.loads(path.read_text()).get("tuning", {})
    if "distinct_settings" in tuning:
        return tuning["distinct_settings"]
    finished = tuning.get("trials", {}).get("COMPLETE", 0) + tuning.get("trials", {}).get("PRUNED", 0)
    if not (Path(sweep_args.output_dir) / "study.db").is_file():
        return finished
    import optuna

    return min(finished, distinct_finished(optuna.load_study(study_name=sweep_args.study_name, storage=sweep_args.storage)))


def collect(args: argparse.Namespace) -> dict:
    """Every finished evaluation in ``output_dir``: {scenario: {name: evaluation}}, in the order of METHODS."""
    results: dict[str, dict] = {}
    for scenario in SCENARIOS:
        for fact_set in evaluations(scenario):
            rows = {name: json.loads(evaluation_path(args, scenario, name, fact_set).read_text())
                    for name in [*untuned_rows(scenario), *METHODS] if evaluation_path(args, scenario, name, fact_set).is_file()}  # fmt: skip
            if rows:
                results[f"{scenario} ({fact_set}, never tuned on)" if fact_set else scenario] = rows
        attempts = {key: json.loads(attempt_path(args, scenario, key).read_text()) for key in ATTEMPTS if attempt_path(args, scenario, key).is_file()}
        if attempts:
            untouched = evaluation_path(args, scenario, "no_unlearning")
            results[f"{scenario} (attempts beyond the comparison: ATTEMPTS)"] = {
                **({"no_unlearning": json.loads(untouched.read_text())} if untouched.is_file() else {}), **attempts}
    return results


def run_time(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Recorded seconds per scenario: every trial's (its study's ``seconds``, pruned and failed ones included) and
    every evaluation's and attempt's. A run cut short and resumed records only its last part."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seconds: dict[str, dict[str, float]] = {}
    for scenario in SCENARIOS:
        trials = evaluations_s = 0.0
        for name in METHODS:
            folder = Path(args.output_dir) / scenario / name
            if (folder / "sweep" / "study.db").is_file():
                study = optuna.load_study(study_name=f"{name}-{scenario}", storage=f"sqlite:///{folder / 'sweep' / 'study.db'}")
                trials += sum(t.user_attrs.get("seconds", 0.0) for t in study.get_trials(deepcopy=False))
        for path in (Path(args.output_dir) / scenario).glob("**/evaluation*.json"):
            evaluations_s += json.loads(path.read_text()).get("seconds") or 0.0
        if trials or evaluations_s:
            seconds[scenario] = {"trials": trials, "evaluations": evaluations_s}
    return seconds


def write(args: argparse.Namespace) -> dict:
    results = collect(args)
    output_dir = Path(args.output_dir)
    write_json(output_dir / "quality.json", finite_or_null({"scale": args.scale, "setting": SCALES[args.scale], "state": state_settings(args),
                                                             "environment": environment(), "results": results}))  # fmt: skip
    write_text(output_dir / "quality.md", markdown(args, results))
    if results:
        plot(results, output_dir / "quality.png")
    return results


def markdown(args: argparse.Namespace, results: dict) -> str:
    lines = [f"Scale `{args.scale}`: {json.dumps(SCALES[args.scale])}", ""]
    times = run_time(args)
    if times:
        lines += ["Recorded run time (single-threaded workers; a run cut short and resumed records its last part): " + "; ".join(
            f"{scenario} {t['trials'] / 3600:.1f} h of trials, {t['evaluations'] / 3600:.1f} h of evaluations" for scenario, t in times.items()), ""]  # fmt: skip
    for scenario, rows in results.items():
        metric = next(iter(rows.values()))["metric"]
        baseline = rows.get("no_unlearning", {}).get("attack_best") or {}
        # The fictitious scenario scores its retain facts too: after unlearning, and where the attacker did best.
        retain_facts = any("retain_facts_accuracy" in (row["after_unlearning"] or {}) for row in rows.values())
        lines += [f"### {scenario}: `{metric}` at the attacker's best", "",
                  "| method | after unlearning | attacker's best | vs no_unlearning | attack | retain_loss there | "
                  + ("retain facts: after unlearning, there | " if retain_facts else "") + "tuning (best of trials) | trials |",
                  "|---|---|---|---|---|---|---|---|" + ("---|" if retain_facts else "")]  # fmt: skip
        for name, row in rows.items():
            best = row["attack_best"]
            trials = row.get("tuning", {}).get("trials", {})
            trial_counts = ", ".join(f"{count} {state.lower()}" for state, count in sorted(trials.items()))
            after = row["after_unlearning"]
            if after is None:
                cells = ["no trial finished within the disruption budget", "", "", "", "", *[""] * retain_facts, ""]
            elif best is None:
                cells = [f"{after[metric]:.4f}", "every attack diverged", "", "", "", *[f"{after.get('retain_facts_accuracy', float('nan')):.3f}"] * retain_facts, ""]
            else:
                # No ratio without the untouched model's row (not evaluated yet), or against its 0.
                tuning = row.get("tuning", {}).get("best_value")
                kept = [f"{after.get('retain_facts_accuracy', float('nan')):.3f}, {best.get('retain_facts_accuracy', float('nan')):.3f}"] * retain_facts
                cells = [f"{after[metric]:.4f}", f"{best[metric]:.4f}", f"{best[metric] / baseline[metric]:.2f}x" if baseline.get(metric) else "", best["attack"], f"{best.get('retain_loss', float('nan')):.4f}",
                         *kept, "" if tuning is None else f"{tuning:.4f}"]  # fmt: skip
            lines.append("| " + " | ".join([name, *cells, trial_counts]) + " |")
        lines.append("")
        for name, row in rows.items():
            if "attempt" in row:
                attempt, unlearning = row["attempt"], row.get("unlearning", {})
                beyond = unlearning.get("beyond_budget_at")
                stop = f"beyond the budget at step {beyond['step']}, kept step {unlearning['kept_step']}" if beyond else "within the budget throughout"
                lines.append(f"- `{name}`: {attempt['why']} ({attempt['max_passes']} passes, budget {attempt['disruption_budget']:g} "
                             f"{attempt['disruption_unit']}): {unlearning.get('steps')} steps, {stop}")  # fmt: skip
        if any("attempt" in row for row in rows.values()):
            lines.append("")
    return "\n".join(lines)


def readme_span(text: str, readme: Path = README) -> tuple[int, int]:
    """Where README's tables lie in its ``text``: between the end of ``README_TABLES[0]`` and the start of ``README_TABLES[1]``."""
    begin = text.find(README_TABLES[0])
    end = text.find(README_TABLES[1], begin + len(README_TABLES[0])) if begin >= 0 else -1
    if end < 0:
        raise SystemExit(f"{readme}: no quality-table lines to write between; put these two lines where the tables go:\n"
                         + "\n".join(README_TABLES))  # fmt: skip
    return begin + len(README_TABLES[0]), end


def readme_tables(readme: Path = README) -> str:
    text = readme.read_text()
    begin, end = readme_span(text, readme)
    return text[begin:end].strip()


def update_readme(tables: str, readme: Path = README) -> None:
    text = readme.read_text()
    begin, end = readme_span(text, readme)
    write_text(readme, f"{text[:begin]}\n\n{tables.strip()}\n\n{text[end:]}")


def plot(results: dict, path: Path) -> None:
    """Bars of the attacker's best per method and scenario, as the MUDMAN paper's ablation figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = {scenario: rows for scenario, rows in results.items() if "attempts" not in scenario}  # the comparison only
    figure, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for axis, (scenario, rows) in zip(axes[0], results.items()):
        metric = next(iter(rows.values()))["metric"]
        names = [n for n, r in rows.items() if r["attack_best"] is not None]
        axis.barh(names, [rows[n]["attack_best"][metric] for n in names])
        axis.set_title(f"{scenario}: {metric} at the attacker's best")
        axis.invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.report:  # printing the table from the state computes nothing: no settings to check
        check_state(args)
        torch.manual_seed(args.seed)
        if args.attempts:
            run_attempts(args)
        else:
            run(args)
    tables = markdown(args, write(args))
    if args.update_readme:
        update_readme(tables)
    print(tables)


if __name__ == "__main__":
    main()
