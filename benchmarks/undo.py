"""Benchmark: UNDO (unlearn, noise, distill; Lee et al. 2025) after the tuned methods, against the oracle.

Each run of RUNS takes a method exactly as the quality benchmark's held-out evaluation ran it (``benchmarks/quality.py``:
its tuned settings, the held-out data, the fresh seed, fp32): that unlearned model is the teacher. A copy of it is
noised with ``alpha`` (β = 0.1, the authors') and distilled from the teacher (``hf_unlearn.UndoTrainer``) on the
scenario's retain text alternated with its forget split (``hf_unlearn.commands.distill.distillation_text``, as ``hf-unlearn
distill`` does), in fp32, 4 sequences a step (the first two runs, ``facts/mudman`` at α 0.3 and 0.1, ran under bf16
autocast, which torch emulates on the AVX2-only CPUs of some sessions: 13x slower). At each step of the
run's ``steps`` the student is kept and later attacked by the quality benchmark's evaluation suite (``standard``),
exactly as the method was: the attacker's best is comparable with the method's row and the oracle's. The base
``no_unlearning`` is the control: the untouched model distilled into its noised copy should keep what it knows.

Besides the standard runs (400 steps on that mix), a run may distill for longer or on the retain text alone
(``Run.forget_text``): the attempts at a missed target, each in a folder of its own (``alpha0.1_1600_steps``,
``alpha0.3_retain_only``) and a row of its own.

The distillation log (the student's retain loss against the teacher's, split-B and retain-facts accuracy, every 25
steps) is the measurement of how far each α is from the authors' stopping rule (within 5 % of the teacher's retain
loss), and of the cost: seconds per step on this machine.

Resumable, its state committed: ``benchmarks/results/undo/<scenario>/<base>/alpha<α>/`` holds ``distillation.json``
(settings, log, seconds), ``step-<N>.json`` per attacked point and the attacks' results; the students and the
trainer's checkpoints and the teachers live in ``$HF_UNLEARN_CACHE/undo/`` (weights never go into git). Cut short, the
same command continues: the teacher is read back (or, on another machine, unlearned again: deterministic), the
distillation resumes from its last checkpoint, and finished attacks are read back. A run whose method has no held-out evaluation yet is skipped, saying so.

    nice python benchmarks/undo.py --threads 1                     # every run of RUNS not yet finished, in order
    nice python benchmarks/undo.py --runs facts/mudman/0.3          # some of them
    nice python benchmarks/undo.py --runs facts/mudman/0.1/100_steps_lr_0.0001 --distill_only   # a pilot's curve, no attacks
    python benchmarks/undo.py --report                             # the table and the frontier figure from the state
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch
from transformers import AutoModelForCausalLM, TrainerCallback

from hf_unlearn import UndoConfig, UndoTrainer
from hf_unlearn.commands.distill import distillation_text
from hf_unlearn.environment import environment
from hf_unlearn.evaluation.report import finite_or_null
from hf_unlearn.models import cache_root, resolve_model_name_or_path
from hf_unlearn.pipeline import attack, unlearn
from hf_unlearn.undo import within_tolerance

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("quality", HERE / "quality.py")
quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quality)

RESULTS = HERE / "results" / "undo"
NOISE_BETA = 0.1  # the authors' default
BATCH_SIZE = 4  # sequences per step: the quality benchmark's
EVAL_EVERY = 25  # distillation steps between evaluations of the student
TOLERANCE = 0.05  # the authors' stopping rule, recorded (not applied: every run distills to its last step)
SEED_OFFSET = 1000  # the held-out evaluation's fresh seed (quality.held_out_scenario): the noise and data order too


class Run(NamedTuple):  # not a dataclass: loaded by path, without registering the module
    scenario: str
    base: str  # a quality.METHODS name with a held-out evaluation, or "no_unlearning" (the control)
    alpha: float
    steps: tuple[int, ...]  # distillation steps at which the student is attacked (the last ends the run)
    forget_text: bool = True  # distill on the forget-domain text too, as the authors do (False: the retain text alone)
    learning_rate: float = UndoConfig.learning_rate  # the authors' for small models

    @property
    def variant(self) -> str:
        """What sets the run apart from the standard one at its α ("": STANDARD_STEPS steps on the authors' mix, at
        their learning rate)."""
        parts = [] if max(self.steps) == STANDARD_STEPS else [f"{max(self.steps)}_steps"]
        parts += [] if self.learning_rate == UndoConfig.learning_rate else [f"lr_{self.learning_rate:g}"]
        return "_".join(parts + ([] if self.forget_text else ["retain_only"]))

    @property
    def key(self) -> str:
        return f"{self.scenario}/{self.base}/{self.alpha:g}" + (f"/{self.variant}" if self.variant else "")


# Distillation cost, one thread: 4.9 s a step of 4 x 64 tokens in fp32 (3.7 s under bf16 autocast) on a CPU with
# bf16 units and nothing else running; on an AVX2-only AMD EPYC with a second worker beside it, 6-9 s in fp32 (~80 s
# under autocast). 400 steps, about 25-60 minutes, distil ~60,000 tokens; each attacked point costs a held-out
# evaluation (~17 minutes on the facts). The frontier (two points a line) is drawn for MUDMAN, the
# other runs are attacked at their last step.
STANDARD_STEPS = 400
FRONTIER = (100, STANDARD_STEPS)
FINAL = (STANDARD_STEPS,)
# The learning rate of the runs after the first two, from the pilot (PILOT_RUNS, --distill_only, fp32). At the
# authors' 7e-4 and 4 sequences a step, alpha 0.1's student came within 5 % of its teacher's retain loss at step 25,
# then rose away from it (1.41x at step 100, 1.31x at 400): too large a step for batches this small. At 1e-4 it
# stays within 3-5 % from step 50 (1.030 / 1.046 / 1.036 at 50 / 75 / 100), and alpha 0.3's student is nearer
# its teacher at step 100 than at 7e-4 (1.75x against 2.12x).
PILOTED_RATE = 1e-4
# The control comes early: whether the distilled student still holds what its teacher knows decides how the method's
# rows read (robustness, or damage the attacks cannot repair).
RUNS = [
    Run("facts", "mudman", 0.3, FRONTIER),  # at the authors' 7e-4, under bf16 autocast: finished
    Run("facts", "mudman", 0.1, (100,), learning_rate=PILOTED_RATE),  # the pilot's student, attacked
    Run("facts", "no_unlearning", 0.3, FINAL, learning_rate=PILOTED_RATE),
    Run("facts", "mudman", 0.3, FRONTIER, learning_rate=PILOTED_RATE),
    Run("facts", "mudman", 0.6, FRONTIER, learning_rate=PILOTED_RATE),
    *(Run("facts", "graddiff", alpha, FINAL, learning_rate=PILOTED_RATE) for alpha in (0.3, 0.1, 0.6)),
    Run("code", "mudman", 0.3, FINAL, learning_rate=PILOTED_RATE),
    *(Run("fictitious", "mudman", alpha, FRONTIER, learning_rate=PILOTED_RATE) for alpha in (0.3, 0.1, 0.6)),
    *(Run("fictitious", "graddiff", alpha, FINAL, learning_rate=PILOTED_RATE) for alpha in (0.3, 0.1, 0.6)),
    Run("fictitious", "no_unlearning", 0.3, FINAL, learning_rate=PILOTED_RATE),
    # Attempts at the capitals' missed target (<= 0.2 at the attacker's best; alpha 0.1 in tolerance: 0.65): four times
    # the distillation tokens, and the retain text alone (the list; a larger alpha is the 0.6 run above).
    Run("facts", "mudman", 0.3, (STANDARD_STEPS, 4 * STANDARD_STEPS), learning_rate=PILOTED_RATE),
    Run("facts", "mudman", 0.3, FINAL, forget_text=False, learning_rate=PILOTED_RATE),
    Run("facts", "mudman", 0.1, FRONTIER),  # at 7e-4 under bf16 autocast: its step-100 student half attacked, last
]
PILOT_RUNS = [Run("facts", "mudman", alpha, (100,), learning_rate=rate) for alpha in (0.1, 0.3) for rate in (1e-4, 3e-5)]
RUNS_BY_KEY = {run.key: run for run in RUNS + PILOT_RUNS}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", choices=list(RUNS_BY_KEY), default=[run.key for run in RUNS], help="default: RUNS, in order")
    parser.add_argument("--distill_only", action="store_true", help="distill (and log the student's curve), attack nothing")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--report", action="store_true", help="write and print the table and figure from the state; compute nothing")
    parser.add_argument("--time_limit_minutes", type=float, default=None, help="start no run or attacked point after this long")
    args = parser.parse_args(argv)
    args.deadline = None if args.time_limit_minutes is None else time.time() + 60 * args.time_limit_minutes
    return args


def run_folder(run: Run) -> Path:
    return RESULTS / run.scenario / run.base / (f"alpha{run.alpha:g}" + (f"_{run.variant}" if run.variant else ""))


def student_folder(run: Run, step: int) -> Path:
    return cache_root() / "undo" / run.key / f"step-{step}"


def quality_args() -> argparse.Namespace:
    """The quality benchmark's default scale and committed state: the methods' tuned settings and rows."""
    return quality.parse_args([])


def method_evaluation(run: Run) -> dict | None:
    """The quality benchmark's held-out evaluation of the run's method (None: not finished)."""
    path = quality.evaluation_path(quality_args(), run.scenario, run.base)
    return json.loads(path.read_text()) if path.is_file() else None


def teacher_folder(run: Run, evaluation: dict) -> Path:
    """Where the teacher's weights are kept for the runs after the first (unlearning it again costs minutes): one
    folder per tuned settings and starting model, so a re-tuned method is unlearned afresh."""
    made_from = json.dumps({"settings": evaluation["settings"], "model_sha256": evaluation.get("model_sha256")}, sort_keys=True)
    return cache_root() / "undo" / run.scenario / run.base / f"teacher-{hashlib.sha256(made_from.encode()).hexdigest()[:12]}"


def teacher_and_scenario(run: Run, evaluation: dict) -> tuple[Any, Any, Any, int]:
    """The teacher (the method's model as its held-out evaluation made it), the scenario data, tokenizer and seed."""
    args, scale = quality_args(), quality.SCALES["default"]
    scenario, tokenizer, seed = quality.held_out_scenario(args, scale, run.base, run.scenario)
    start = resolve_model_name_or_path(quality.model_path(args, run.scenario))
    if run.base == "no_unlearning":
        return AutoModelForCausalLM.from_pretrained(start, dtype=torch.float32), scenario, tokenizer, seed
    folder = teacher_folder(run, evaluation)
    if not folder.is_dir():
        fixed = quality.sweep_arguments(args, scale, run.base, run.scenario).fixed
        config = quality.held_out_config(run.base, scale, fixed, evaluation["settings"], str(folder.with_name("unlearn")), seed)
        model = unlearn(AutoModelForCausalLM.from_pretrained(start, dtype=torch.float32), config, scenario, tokenizer).model
        save_whole(model, folder)
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), scenario, tokenizer, seed


def save_whole(model: Any, folder: Path) -> None:
    """Written whole, then renamed: a kill leaves no half model."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)


class KeepStudents(TrainerCallback):
    """Saves the student at each of ``steps`` (written whole, then renamed: a kill leaves no half model)."""

    def __init__(self, run: Run):
        self.run = run

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step in self.run.steps:
            save_whole(model, student_folder(self.run, state.global_step))


def distill(run: Run, teacher: Any, scenario: Any, tokenizer: Any, seed: int) -> dict:
    """Noise a copy of ``teacher`` and distill it for the run's last step, keeping the students of ``run.steps``;
    returns what ``distillation.json`` records."""
    output_dir = cache_root() / "undo" / run.key / "train"
    config = UndoConfig(
        output_dir=str(output_dir), noise_alpha=run.alpha, noise_beta=NOISE_BETA, noise_seed=seed, seed=seed, max_steps=max(run.steps), learning_rate=run.learning_rate,
        per_device_train_batch_size=BATCH_SIZE, per_device_eval_batch_size=16, distill_tolerance=None, eval_steps=EVAL_EVERY,
        eval_on_start=True, logging_steps=EVAL_EVERY, save_strategy="steps", save_steps=EVAL_EVERY, save_total_limit=1, report_to="none",
        disable_tqdm=True,
    )  # fmt: skip
    trainer = UndoTrainer(  # keeps a frozen copy of the teacher, noises the model given: the student
        teacher, config, train_dataset=distillation_text(scenario, tokenizer, seed, run.forget_text), eval_dataset=scenario.eval,
        processing_class=tokenizer, evaluators=scenario.evaluators, callbacks=[KeepStudents(run)],
    )  # fmt: skip
    teacher_loss = trainer.teacher_retain_loss()
    started = time.time()
    resume = any(output_dir.glob("checkpoint-*"))
    trainer.train(resume_from_checkpoint=resume or None)
    log: dict[int, dict] = {}  # one entry per evaluation: the eval sets and evaluators log apart
    for entry in trainer.state.log_history:
        if any(name.startswith("eval_") for name in entry):
            log.setdefault(entry["step"], {}).update(entry)
    within = [step for step, entry in log.items() if within_tolerance(entry["eval_retain_loss"], teacher_loss, TOLERANCE)]
    return {
        "run": run._asdict(), "noise_beta": NOISE_BETA, "batch_size": BATCH_SIZE, "seed": seed, "learning_rate": config.learning_rate,
        "bf16": config.bf16, "teacher_retain_loss": teacher_loss, "within_tolerance_at_step": within[0] if within else None, "log": list(log.values()), "info": trainer.distillation_info(), "seconds": time.time() - started, "resumed": resume,
        "seconds_per_step": (time.time() - started) / max(trainer.state.global_step, 1) if not resume else None,
        "environment": environment(),
    }  # fmt: skip


def attack_student(run: Run, step: int, scenario: Any, tokenizer: Any, seed: int, distillation: dict) -> dict:
    """The standard suite on the student kept at ``step``, as the quality benchmark attacks the methods."""
    started = time.time()
    model = AutoModelForCausalLM.from_pretrained(student_folder(run, step), dtype=torch.float32)
    suite = quality.evaluation_suite(quality.SCALES["default"], run_folder(run) / f"attacks_step-{step}", scenario.best_metric, seed)
    result = attack(model, suite, scenario, tokenizer, resume=True)
    point = next((entry for entry in distillation["log"] if entry["step"] == step), {})
    return finite_or_null({
        "run": run._asdict(), "step": step, "metric": scenario.best_metric.removeprefix("eval_"),
        "distill_tokens": point.get("num_input_tokens_seen"), "student_retain_loss": point.get("eval_retain_loss"),
        "teacher_retain_loss": distillation["teacher_retain_loss"], "after_undo": result.start_point, "all_diverged": result.all_diverged,
        "attack_best": None if result.all_diverged else result.best_point(), "attacks": result.to_dict(), "seconds": time.time() - started,
    })  # fmt: skip


def out_of_time(args: argparse.Namespace) -> bool:
    if args.deadline is not None and time.time() > args.deadline:
        print(f"--time_limit_minutes {args.time_limit_minutes:g} is up: the state keeps what finished; the same command continues", flush=True)
        return True
    return False


def run_all(args: argparse.Namespace) -> None:
    for key in args.runs:
        run = RUNS_BY_KEY[key]
        folder = run_folder(run)
        missing = [step for step in run.steps if not (folder / f"step-{step}.json").is_file()]
        if not missing:
            continue
        evaluation = None if run.base == "no_unlearning" else method_evaluation(run)
        if run.base != "no_unlearning" and not (evaluation and evaluation.get("settings")):
            print(f"{key}: skipped, {run.base} has no held-out evaluation with tuned settings in the quality benchmark yet", flush=True)
            continue
        if out_of_time(args):
            return
        print(f"{key}: the teacher", flush=True)
        teacher, scenario, tokenizer, seed = teacher_and_scenario(run, evaluation)
        distillation_path = folder / "distillation.json"
        if not distillation_path.is_file() or not all(student_folder(run, step).is_dir() for step in missing):
            print(f"{key}: distilling to step {max(run.steps)}", flush=True)
            quality.write_json(distillation_path, finite_or_null(distill(run, teacher, scenario, tokenizer, seed)))
        distillation = json.loads(distillation_path.read_text())
        if args.distill_only:
            print(markdown_curve(run, distillation), flush=True)
            continue
        for step in missing:
            if out_of_time(args):
                return
            print(f"{key}: attacking the student of step {step}", flush=True)
            quality.write_json(folder / f"step-{step}.json", attack_student(run, step, scenario, tokenizer, seed, distillation))
            write(args)


def collect() -> dict[str, dict]:
    """{scenario: {"rows": [point, ...], "method": {base: evaluation}, "oracle": evaluation | None, "untouched": ...}}."""
    qargs = quality_args()
    results: dict[str, dict] = {}
    for run in RUNS:
        points = [json.loads(path.read_text()) for path in sorted(run_folder(run).glob("step-*.json"))]
        if not points:
            continue
        scenario = results.setdefault(run.scenario, {"rows": [], "method": {}})
        scenario["rows"] += sorted(points, key=lambda point: point["step"])
        for name in (run.base, "no_unlearning", "oracle"):
            path = quality.evaluation_path(qargs, run.scenario, name)
            if path.is_file():
                scenario["method"][name] = json.loads(path.read_text())
    return results


def markdown(results: dict) -> str:
    lines = []
    for scenario, content in results.items():
        metric = quality.METRICS[scenario]
        lines += [f"### {scenario}: `{metric}` at the attacker's best, after UNDO", "",
                  "| model | α | distillation steps | tokens | student / teacher retain loss | after | attacker's best | attack |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for name, row in content["method"].items():
            best = row.get("attack_best") or {}
            lines.append(f"| {name} (no UNDO) | | | | | {fmt(row.get('after_unlearning'), metric)} | {fmt(best, metric)} | {best.get('attack', '')} |")
        for point in content["rows"]:
            best, run = point.get("attack_best") or {}, Run(**point["run"])
            ratio = point["student_retain_loss"] / point["teacher_retain_loss"] if point.get("student_retain_loss") else float("nan")
            lines.append(f"| {label(run)} | {run.alpha:g} | {point['step']} | {point['distill_tokens']} | {ratio:.3f} | "
                         f"{fmt(point['after_undo'], metric)} | {fmt(best, metric) if best else 'every attack diverged'} | {best.get('attack', '')} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def markdown_curve(run: Run, distillation: dict) -> str:
    """The student's retain loss (and split-B metric) at each evaluation, against the teacher's."""
    metric = f"eval_{quality.METRICS[run.scenario]}"
    lines = [f"{run.key}: teacher's retain loss {distillation['teacher_retain_loss']:.3f}", "", "| step | tokens | retain loss | ratio | split B |", "|---|---|---|---|---|"]
    for entry in distillation["log"]:
        lines.append(f"| {entry['step']} | {entry.get('num_input_tokens_seen')} | {entry['eval_retain_loss']:.3f} | "
                     f"{entry['eval_retain_loss'] / distillation['teacher_retain_loss']:.3f} | {entry.get(metric, float('nan')):.4f} |")  # fmt: skip
    return "\n".join(lines)


def label(run: Run) -> str:
    return f"{run.base} + UNDO" + (f" ({run.variant.replace('_', ' ')})" if run.variant else "")


def fmt(point: dict | None, metric: str) -> str:
    value = (point or {}).get(metric)
    return "" if value is None else f"{value:.4f}"


BASE_COLORMAPS = {"mudman": "Blues", "graddiff": "Oranges", "no_unlearning": "Greys"}  # others: "Greens"
ALPHA_MARKERS = {0.1: "o", 0.3: "s", 0.6: "^"}


def plot(results: dict, path: Path) -> None:
    """The robustness-compute frontier: the attacker's best against distilled tokens, one line per run (a colour per
    method, its shades for the runs, a marker per α); the methods without UNDO (dashed, the method's colour) and the
    oracle (black) as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for axis, (scenario, content) in zip(axes[0], results.items()):
        metric = quality.METRICS[scenario]
        lines: dict[Run, list[tuple[int, float]]] = {}
        for point in content["rows"]:
            if point.get("attack_best") and point.get("distill_tokens"):
                lines.setdefault(Run(**{**point["run"], "steps": tuple(point["run"]["steps"])}), []).append((point["distill_tokens"], point["attack_best"][metric]))
        for base in sorted(({run.base for run in lines} | set(content["method"])) - {"oracle"}):
            colormap = plt.get_cmap(BASE_COLORMAPS.get(base, "Greens"))
            runs = sorted((run for run in lines if run.base == base), key=lambda run: (run.alpha, run.variant))
            for index, run in enumerate(runs):
                axis.plot(*zip(*sorted(lines[run])), marker=ALPHA_MARKERS.get(run.alpha, "D"), color=colormap(0.45 + 0.5 * index / max(len(runs), 1)),
                          label=f"{label(run)} α={run.alpha:g}")  # fmt: skip
            row = content["method"].get(base) or {}
            if row.get("attack_best"):
                axis.axhline(row["attack_best"][metric], color=colormap(0.7), linestyle="--", linewidth=1, label=f"{base} (no UNDO)")
        if (content["method"].get("oracle") or {}).get("attack_best"):
            axis.axhline(content["method"]["oracle"]["attack_best"][metric], color="black", linewidth=1, label="oracle")
        axis.set_xlabel("distilled tokens")
        axis.set_ylabel(f"{metric} at the attacker's best")
        axis.set_title(scenario)
        axis.legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(args: argparse.Namespace) -> dict:
    results = collect()
    quality.write_text(RESULTS / "undo.md", markdown(results))
    if results:
        plot(results, RESULTS / "undo.png")
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.report:
        run_all(args)
    print(markdown(write(args)))


if __name__ == "__main__":
    sys.exit(main())
