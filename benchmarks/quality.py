"""Benchmark: how robustly every method unlearns, each tuned the same way, at equal compute.

Two scenarios on the embedded SmolLM2-135M, offline (``hf_unlearn.scenarios``):

- ``code`` (the MUDMAN paper's SmolLM / Python experiment): forget standard-library Python, retain
  English prose; disruption = loss on held-out prose above its start, at most ``--budget_nats``; the
  metric is the held-out forget loss at the attacker's best (higher is more robust).
- ``facts`` (Deeb & Roger): the capitals the model knows, attack on split A, split-B accuracy at the
  attacker's best (lower is more robust); disruption +``--budget_relative`` on held-out Python source.

Every method is tuned by the same sweep (``hf_unlearn.sweep``: ``--trials`` Optuna trials, the
quick attack suite, the same pass budget of forward+backward passes) on a tuning split (code: the
tuning half of the forget documents; facts: one A/B partition), then its best settings are run on
held-out data (code: the test half; facts: another partition) with a fresh seed and attacked with
the ``standard`` suite. ``no_unlearning`` is the untouched model under the same attacks.

Resumable: studies live in SQLite under ``--output_dir`` and finished evaluations in JSON, so a
rerun computes only what is missing. Writes ``quality.json``, ``quality.md`` and ``quality.png``.

    python benchmarks/quality.py --quick                 # a smoke run (~30 min on 2 CPU cores)
    python benchmarks/quality.py                         # the default scale (see SCALES)
    python benchmarks/quality.py --scale paper           # 16 x 100-token batches, the paper's budgets (a GPU)
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_unlearn import AttackSuite, default_model_path, get_method
from hf_unlearn.data import DataArguments
from hf_unlearn.evaluation.report import finite_or_null
from hf_unlearn.pipeline import attack, unlearn
from hf_unlearn.sweep import SEARCH_SPACES, SweepArguments, build_scenario, run_sweep

_NO_ADVERSARY = ("adv_lr", "fork_every_n_loops", "adv_decay")
# name: (method, fixed settings, search space). The ablations and combinations reuse the methods' spaces.
METHODS = {
    "mudman": ("mudman", {}, SEARCH_SPACES["mudman"]),
    "mudman_no_masking": ("mudman", {"disruption_masking": False}, SEARCH_SPACES["mudman"]),
    "mudman_no_normalization": ("mudman", {"normalize_unlearning_grad": False}, {**SEARCH_SPACES["mudman"], "unlearning_rate": SEARCH_SPACES["tar"]["unlearning_rate"]}),
    "mudman_no_meta_learning": ("mudman", {"meta_learning": False}, {k: v for k, v in SEARCH_SPACES["mudman"].items() if k not in _NO_ADVERSARY}),
    "tar": ("tar", {}, SEARCH_SPACES["tar"]),
    "graddiff": ("graddiff", {}, SEARCH_SPACES["graddiff"]),
    "npo": ("npo", {}, SEARCH_SPACES["npo"]),
    "simnpo": ("simnpo", {}, SEARCH_SPACES["simnpo"]),
    "rmu": ("rmu", {}, SEARCH_SPACES["rmu"]),
    "circuit_breakers": ("circuit_breakers", {}, SEARCH_SPACES["circuit_breakers"]),
    "cir": ("cir", {}, SEARCH_SPACES["cir"]),
    # Combinations no other library offers: NPO's objective with MUDMAN's components.
    "npo_masking": ("npo", {"disruption_masking": True}, {**SEARCH_SPACES["npo"], "retain_momentum": SEARCH_SPACES["mudman"]["retain_momentum"]}),
    "npo_meta_masked_normalized": (
        "npo", {"meta_learning": True, "disruption_masking": True, "normalize_unlearning_grad": True},
        {"learning_rate": SEARCH_SPACES["npo"]["learning_rate"], "npo_beta": SEARCH_SPACES["npo"]["npo_beta"],
         **{k: v for k, v in SEARCH_SPACES["mudman"].items() if k in (*_NO_ADVERSARY, "retain_momentum")}},
    ),  # fmt: skip
}
# The default scale fits 6 hours of a 2-core CPU, sweeps included; the paper scale is the MUDMAN paper's budgets.
SCALES = {
    "quick": dict(trials=1, tokens=64, batch_size=4, pass_budget=24, tune_attack_steps=6, eval_attack_steps=10, eval_suite="quick",
                  methods=["mudman", "graddiff", "cir"], max_countries=60, eval_examples=8),
    "default": dict(trials=3, tokens=64, batch_size=4, pass_budget=120, tune_attack_steps=20, eval_attack_steps=30, eval_suite="standard",
                    methods=list(METHODS), max_countries=120, eval_examples=16),
    "paper": dict(trials=20, tokens=100, batch_size=16, pass_budget=1500, tune_attack_steps=None, eval_attack_steps=None,
                  eval_suite="standard", methods=list(METHODS), max_countries=120, eval_examples=64),
}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(SCALES), default="default")
    parser.add_argument("--quick", action="store_true", help="the quick scale: a smoke run")
    parser.add_argument("--scenarios", nargs="+", choices=["code", "facts"], default=["code", "facts"])
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=None, help="default: the scale's")
    parser.add_argument("--budget_nats", type=float, default=0.05, help="code: disruption budget (MUDMAN's +0.05 nats)")
    parser.add_argument("--budget_relative", type=float, default=0.001, help="facts: disruption budget (CIR's +0.1 %%)")
    parser.add_argument("--output_dir", default="outputs/benchmarks/quality")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    if args.quick:
        args.scale = "quick"
    return args


def sweep_arguments(args: argparse.Namespace, scale: dict, name: str, scenario: str) -> SweepArguments:
    method, fixed, space = METHODS[name]
    cir_fixed = {"per_device_train_batch_size": scale["batch_size"], "retain_batch_size": None} if method == "cir" else {}  # equal batches
    return SweepArguments(
        method=method, scenario=scenario, search_space=space, fixed={**fixed, **cir_fixed}, n_trials=scale["trials"],
        disruption_budget=args.budget_nats if scenario == "code" else args.budget_relative,
        disruption_unit="nats" if scenario == "code" else "relative", pass_budget=scale["pass_budget"], attack_suite="quick",
        attack_steps=scale["tune_attack_steps"], eval_steps=5, batch_size=scale["batch_size"], max_countries=scale["max_countries"],
        output_dir=str(Path(args.output_dir) / scenario / name / "sweep"), study_name=f"{name}-{scenario}", seed=args.seed,
    )  # fmt: skip


def data_arguments(scale: dict, pool: str, split_seed: int) -> DataArguments:
    return DataArguments(chunk_length=scale["tokens"], max_eval_examples=scale["eval_examples"], forget_pool=pool, split_seed=split_seed,
                         max_forget_documents=120)  # fmt: skip


def evaluate(args: argparse.Namespace, scale: dict, name: str, scenario: str, best: dict | None) -> dict:
    """The method at its tuned settings on held-out data, a fresh seed, attacked by the evaluation suite."""
    path = Path(args.output_dir) / scenario / name / "evaluation.json"
    if path.is_file():
        return json.loads(path.read_text())
    seed = args.seed + 1000  # fresh
    model_path = default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    data_args = data_arguments(scale, "test", seed)
    sweep_args = sweep_arguments(args, scale, name if name != "no_unlearning" else "mudman", scenario)
    sweep_args = replace(sweep_args, seed=seed)
    scenario_data = build_scenario(sweep_args, data_args, AutoModelForCausalLM.from_pretrained(model_path), tokenizer)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    started, unlearning = time.time(), {}
    if name != "no_unlearning":
        method, fixed, _ = METHODS[name]
        config = get_method(method).config(
            output_dir=str(path.parent / "unlearn"), max_steps=scale["pass_budget"], max_passes=scale["pass_budget"],
            per_device_train_batch_size=scale["batch_size"], eval_strategy="no", eval_on_start=False, save_strategy="no",
            report_to="none", seed=seed, disable_tqdm=True, **{**sweep_args.fixed, **best["best_params"]},
        )  # fmt: skip
        trainer = unlearn(model, config, scenario_data, tokenizer)
        model = trainer.model
        unlearning = {"steps": trainer.state.global_step, "passes": trainer.procedure.passes, "seconds": time.time() - started}
    overrides = {} if scale["eval_attack_steps"] is None else {"max_steps": scale["eval_attack_steps"]}
    suite = AttackSuite.preset(
        scale["eval_suite"], output_dir=str(path.parent / "attacks"), per_device_train_batch_size=scale["batch_size"], eval_steps=10,
        metric_for_best_model=scenario_data.best_metric, seed=seed, disable_tqdm=True, **overrides,
    )  # fmt: skip
    result = attack(model, suite, scenario_data, tokenizer, resume=True)
    metric = scenario_data.best_metric.removeprefix("eval_")
    start = result.start_point
    evaluation = {
        "name": name, "scenario": scenario, "metric": metric, "after_unlearning": start, "all_diverged": result.all_diverged,
        "attack_best": None if result.all_diverged else result.best_point(), "settings": best["best_params"] if best else {},
        "tuning": {k: best[k] for k in ("best_value", "top_k_mean", "top_k_sem", "trials") if k in best} if best else {},
        "unlearning": unlearning, "seconds": time.time() - started,
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(finite_or_null(evaluation), indent=2))
    return evaluation


def run(args: argparse.Namespace) -> dict:
    scale = SCALES[args.scale]
    names = args.methods or scale["methods"]
    results: dict[str, dict] = {}
    for scenario in args.scenarios:
        results[scenario] = {}
        for name in ["no_unlearning", *names]:
            best = None
            if name != "no_unlearning":
                best = run_sweep(sweep_arguments(args, scale, name, scenario), data_arguments(scale, "tuning", args.seed))
            results[scenario][name] = evaluate(args, scale, name, scenario, best)
            write(args, results)
    return results


def write(args: argparse.Namespace, results: dict) -> None:
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "quality.json").write_text(json.dumps(finite_or_null({"scale": args.scale, "setting": SCALES[args.scale], "results": results}), indent=2))
    (output_dir / "quality.md").write_text(markdown(args, results))
    plot(results, output_dir / "quality.png")


def markdown(args: argparse.Namespace, results: dict) -> str:
    lines = [f"Scale `{args.scale}`: {json.dumps(SCALES[args.scale])}", ""]
    for scenario, rows in results.items():
        metric = next(iter(rows.values()))["metric"]
        baseline = rows.get("no_unlearning", {}).get("attack_best") or {}
        lines += [f"### {scenario}: `{metric}` at the attacker's best", "",
                  "| method | after unlearning | attacker's best | vs no_unlearning | attack | retain_loss there | tuning (best of trials) |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for name, row in rows.items():
            best = row["attack_best"]
            if best is None:
                lines.append(f"| {name} | {row['after_unlearning'][metric]:.4f} | every attack diverged | | | | |")
                continue
            ratio = best[metric] / baseline[metric] if baseline.get(metric) else float("nan")
            tuning = row.get("tuning", {}).get("best_value")
            lines.append(f"| {name} | {row['after_unlearning'][metric]:.4f} | {best[metric]:.4f} | {ratio:.2f}x | {best['attack']} | "
                         f"{best.get('retain_loss', float('nan')):.4f} | {'' if tuning is None else f'{tuning:.4f}'} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    """Bars of the attacker's best per method and scenario, as the MUDMAN paper's ablation figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    results = run(args)
    print(markdown(args, results))


if __name__ == "__main__":
    main()
