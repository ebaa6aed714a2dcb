"""Tune an unlearning method for robustness: an Optuna search under a disruption budget and a pass budget.

The MUDMAN paper's procedure, with an attack suite in place of its single attack. Each trial:

1. samples the method's settings (``search_space``; by default the one its registration carries, about a
   decade either side of its published values, which the first trial takes) on top of the ``fixed`` ones;
2. unlearns the scenario's forget set for ``pass_budget`` forward+backward passes (counted as
   ``forward_backward_passes``, so methods compare at equal compute), evaluating every
   ``eval_steps``; a trial whose disruption (general-text loss above its start, in nats or
   relative) exceeds ``disruption_budget`` is pruned there (Optuna's pruning);
3. attacks the unlearned model with the ``attack_suite`` preset (``quick`` by default); the
   objective is the attacker's best forget metric over the suite (held-out forget loss, maximised;
   or split-B fact accuracy, minimised). A trial whose every attack diverged measured nothing and
   fails.

The study lives in an Optuna storage (SQLite under ``output_dir`` by default, or any RDB URL, so
that many machines work on one study). Rerunning the command resumes it: finished trials are kept,
and a trial cut short by a kill is marked failed once its heartbeat is stale (two heartbeats after the
kill), never lost; its settings then run again, unless the study reaches ``n_trials`` distinct settings
first. The resumed sampler draws settings the study has not tried (it does not replay its draws); workers
sharing one study draw the same settings if they start together with the same trial count: start them
apart. The
summary (``summary.json``, ``best.yaml`` ready for ``hf-unlearn unlearn --config``, plots of the trials and
of the parameter importances) is written at the end.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import TrainerCallback, TrainingArguments

from .attacks import PRESETS, AttackSuite
from .attacks.presets import check_preset_choice
from .data import DataArguments
from .evaluation.disruption import METRIC, DisruptionBudget
from .methods import available_methods, get_method
from .models import load_model
from .pipeline import attack, unlearn
from .registry import around  # noqa: F401  (the search-space helper, re-exported)
from .scenarios import Scenario, ScenarioArguments, ScenarioChoice, facts_scenario
from .tracking import finish_open_run, reports_to_wandb


@dataclass
class SweepArguments(ScenarioChoice):
    """The search (``recipes/sweep.py``, ``hf-unlearn sweep``): in which scenario (``ScenarioChoice``), what is tuned,
    under which budgets, against which attacks."""

    method: str = field(default="mudman", metadata={"help": "Method to tune (any registered method: hf-unlearn unlearn --help lists them)."})
    search_space: dict | str | None = field(
        default=None,
        metadata={
            "help": "Settings to search, {field: {low, high, log} or {choices: [...]}} (YAML or JSON); default: the "
            "method's registered search space."
        },
    )
    fixed: dict | str | None = field(default=None, metadata={"help": "Settings every trial gets, {field: value}."})
    n_trials: int = field(default=20, metadata={"help": "Finished (completed or pruned) trials of distinct settings the study runs to."})
    disruption_budget: float = field(
        default=0.05,
        metadata={"help": "Every trial's disruption budget (UnlearnConfig.disruption_budget): a trial beyond it is pruned."},
    )
    disruption_unit: str = field(default="nats", metadata={"help": "Its unit: nats (MUDMAN's +0.05) or relative (CIR's +0.1 %: 0.001)."})
    pass_budget: int = field(default=120, metadata={"help": "Forward+backward passes of unlearning per trial (equal compute)."})
    attack_suite: str = field(default="quick", metadata={"help": f"Attack suite preset: {', '.join(PRESETS)}."})
    attacks: list[str] | None = field(default=None, metadata={"help": "Only these attacks of the preset (default: all)."})
    attack_steps: int | None = field(default=None, metadata={"help": "Steps of every attack (default: the preset's)."})
    eval_steps: int = field(default=10, metadata={"help": "Unlearning steps between evaluations (pruning checks)."})
    attack_eval_steps: int | None = field(default=None, metadata={"help": "Attack steps between evaluations (default: eval_steps)."})
    bf16: bool = field(
        default=False,
        metadata={"help": "Trials under bf16 autocast (weights and updates stay fp32): about 1.9x faster on CPUs with bf16 units "
                  "(AMX), about 13x slower on CPUs without (AVX2), where torch emulates bf16."},
    )
    batch_size: int = field(default=8, metadata={"help": "Examples per step, unlearning and attacks."})
    storage: str | None = field(default=None, metadata={"help": "Optuna storage URL; default sqlite:///<output_dir>/study.db."})
    study_name: str | None = field(default=None, metadata={"help": "Study name; default <method>-<scenario>."})
    top_k: int = field(default=5, metadata={"help": "The summary reports mean +- SEM over the best this-many trials."})
    heartbeat_interval: int = field(default=60, metadata={"help": "Seconds between heartbeats; a trial silent for 2x this is failed."})
    timeout_s: float | None = field(
        default=None,
        metadata={"help": "Start no trial this many seconds after the sweep started (model loading included); the same command continues the study."},
    )
    output_dir: str = field(default="outputs/sweep", metadata={"help": "Study, trials and summary go here."})
    seed: int = field(default=42, metadata={"help": "Seed of the sampler and of every trial."})
    report_to: str = field(default="none", metadata={"help": "'wandb': one W&B run per trial, grouped by study."})

    def __post_init__(self):
        if self.method not in available_methods():
            raise ValueError(f"method={self.method!r} is invalid: use one of {', '.join(available_methods())}")
        self.check_scenario()
        DisruptionBudget(self.disruption_budget, self.disruption_unit)  # refuses a unit or amount it cannot use
        check_preset_choice(self.attack_suite, self.attack_steps)
        if self.attacks is not None and not set(self.attacks) <= set(PRESETS[self.attack_suite]):
            raise ValueError(f"attacks={self.attacks!r}: the {self.attack_suite} preset's attacks are {', '.join(PRESETS[self.attack_suite])}")
        for name in ("n_trials", "pass_budget", "eval_steps", "top_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid: it must be >= 1")
        self.search_space = _mapping("search_space", self.search_space) or get_method(self.method).search_space
        if not self.search_space:
            raise ValueError(f"search_space is empty: method {self.method!r} has no default search space, give one")
        self.fixed = {**get_method(self.method).sweep_fixed, **(_mapping("fixed", self.fixed) or {})}
        config_fields = set(get_method(self.method).config.__dataclass_fields__)
        for name in [*self.search_space, *self.fixed]:
            if name in ("disruption_budget", "disruption_unit"):
                raise ValueError(f"{name} cannot be tuned or fixed: it is the sweep's own --{name}, which prunes every trial beyond it")
            if name not in config_fields:
                raise ValueError(f"{name!r} is not a setting of method {self.method!r} ({get_method(self.method).config.__name__})")
        self.study_name = self.study_name or f"{self.method}-{self.scenario}"
        self.storage = self.storage or f"sqlite:///{Path(self.output_dir).resolve() / 'study.db'}"


def _mapping(name: str, value: dict | str | None) -> dict | None:
    """A dict given as a dict, a JSON / YAML string, or the path of a YAML file."""
    if value is None or isinstance(value, dict):
        return value
    if Path(value).is_file():
        value = Path(value).read_text()
    parsed = yaml.safe_load(value)
    if not isinstance(parsed, dict):
        raise ValueError(f"{name}={value!r} is invalid: give a mapping {{field: ...}} (YAML, JSON, or a YAML file)")
    return parsed


def suggest(trial: Any, name: str, spec: dict[str, Any]) -> Any:
    """One setting from its search-space entry: ``{"choices": [...]}`` or ``{"low", "high", "log"}`` (ints stay ints),
    either with an optional ``published`` value, which the study's first trial takes."""
    if "choices" in spec:
        return trial.suggest_categorical(name, spec["choices"])
    if isinstance(spec["low"], int) and isinstance(spec["high"], int) and not spec.get("log"):
        return trial.suggest_int(name, spec["low"], spec["high"])
    return trial.suggest_float(name, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log", False)))


def build_scenario(args: SweepArguments, data_args: DataArguments, model: Any, tokenizer: Any, facts: Any = None) -> Scenario:
    """The sweep's scenario; ``facts`` (facts scenario): another fact set than the one it tunes on."""
    if facts is None:
        return ScenarioArguments.of(args, data_args).build(tokenizer, model)
    return facts_scenario(
        model, tokenizer, facts, retain_source=data_args.retain_source, general_source=args.general_source or "python_stdlib",
        chunk_length=data_args.chunk_length,
        max_eval_examples=data_args.max_eval_examples or 32, phrasings=args.phrasings or None, seed=data_args.split_seed,
    )  # fmt: skip


class BudgetPruning(TrainerCallback):
    """At every evaluation: prune the trial once disruption exceeds the budget, recording how far and when.

    Disruption is the rise of ``eval_retain_loss`` (the scenario's general text) above its first value. The forget
    metric is not reported to the trial: it rises with disruption, so a trial that broke the model would look
    promising; a pruned trial without intermediate values ranks below every completed one in the sampler.
    """

    def __init__(self, trial: Any, args: SweepArguments):
        self.trial, self.args = trial, args
        self.start: float | None = None
        self.disruption = 0.0

    def check(self, metrics: dict[str, float], step: int) -> None:
        import optuna

        if f"eval_{METRIC}" not in metrics:
            return
        value = metrics[f"eval_{METRIC}"]
        self.start = value if self.start is None else self.start
        budget = DisruptionBudget(self.args.disruption_budget, self.args.disruption_unit)
        self.disruption = budget.rise(self.start, value)
        if budget.exceeded(self.start, value):
            self.trial.set_user_attr("disruption", self.disruption)
            self.trial.set_user_attr("pruned_at_step", step)
            raise optuna.TrialPruned(f"disruption {self.disruption:.4g} {self.args.disruption_unit} > {budget} at step {step}")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.check(metrics or {}, state.global_step)


def precision(args: SweepArguments) -> dict[str, bool]:
    """TrainingArguments for bf16 autocast (``use_cpu`` where there is no GPU: transformers asks for it on the CPU)."""
    return {"bf16": True, "use_cpu": not torch.cuda.is_available()} if args.bf16 else {}


def run_trial(
    trial: Any, params: dict[str, Any], args: SweepArguments, model_path: str, scenario: Scenario, tokenizer: Any
) -> float:
    """Unlearn with the trial's settings, prune on disruption, attack, and return the attacker's best forget metric."""
    import optuna

    trial_dir = Path(args.output_dir) / "trials" / f"trial-{trial.number:04d}"
    metric = scenario.best_metric
    settings = dict(
        output_dir=str(trial_dir / "unlearn"), max_steps=args.pass_budget, max_passes=args.pass_budget, per_device_train_batch_size=args.batch_size,
        eval_strategy="steps", eval_steps=args.eval_steps, eval_on_start=True, save_strategy="no", report_to=args.report_to,
        disruption_budget=None,  # the trial is pruned at the budget (BudgetPruning), not stopped there
        run_name=f"{args.study_name}/trial-{trial.number}", seed=args.seed, disable_tqdm=True, **precision(args),
    )  # fmt: skip
    config = get_method(args.method).config(**{**settings, **args.fixed, **params})  # fixed settings and the trial's override ours
    pruning = BudgetPruning(trial, args)
    started = time.time()
    try:
        trainer = unlearn(load_model(model_path)[1], config, scenario, tokenizer, callbacks=[pruning])
        trial.set_user_attr("steps", trainer.state.global_step)
        trial.set_user_attr("passes", trainer.procedure.passes)
        trial.set_user_attr("disruption", pruning.disruption)
        overrides = {} if args.attack_steps is None else {"max_steps": args.attack_steps}
        suite = AttackSuite.preset(
            args.attack_suite, output_dir=str(trial_dir / "attacks"), names=args.attacks, per_device_train_batch_size=args.batch_size,
            eval_steps=args.attack_eval_steps or args.eval_steps, metric_for_best_model=metric, seed=args.seed, disable_tqdm=True,
            **precision(args), **overrides,
        )  # fmt: skip
        result = attack(trainer.model, suite, scenario, tokenizer)
    finally:
        trial.set_user_attr("seconds", time.time() - started)
        if reports_to_wandb(args.report_to):
            finish_open_run()
    if result.all_diverged:
        raise optuna.TrialPruned("every attack diverged: the suite measured nothing")
    best = result.best_point()
    trial.set_user_attr("attack_best", best)
    return best[metric.removeprefix("eval_")]


def run_sweep(args: SweepArguments, data_args: DataArguments, model_name_or_path: str | None = None) -> dict[str, Any]:
    """Create or resume the study, run trials until ``n_trials`` have finished, and write the summary."""
    import optuna

    started = time.time()
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model_path, model, tokenizer = load_model(model_name_or_path)
    scenario = build_scenario(args, data_args, model, tokenizer)
    # Under several processes the main one drives the study and sends each trial's settings to the others,
    # which train with it (the trainers average across processes) and follow its pruning decisions.
    distributed = TrainingArguments(output_dir=args.output_dir, report_to="none").world_size > 1
    main_process = not distributed or torch.distributed.get_rank() == 0

    def share(value: Any = None) -> Any:
        if not distributed:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    if not main_process:
        while (params := share()) is not None:
            try:
                run_trial(optuna.trial.FixedTrial(params), params, args, model_path, scenario, tokenizer)
            except optuna.TrialPruned:
                pass
        return {}

    def objective(trial: Any) -> float:
        params = share({name: suggest(trial, name, spec) for name, spec in args.search_space.items()})
        return run_trial(trial, params, args, model_path, scenario, tokenizer)

    with warnings.catch_warnings():  # heartbeats are an experimental feature of optuna, used deliberately (resume)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(
            args.storage, heartbeat_interval=args.heartbeat_interval, grace_period=2 * args.heartbeat_interval,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),  # a killed trial's settings run again
        )
    study = optuna.create_study(study_name=args.study_name, storage=storage, direction=args.direction, load_if_exists=True)
    # A sampler seeded as the study's first one would replay its draws, repeating finished settings: a resumed study
    # continues the seed by the trials it holds (a fresh study is reproducible from --seed).
    study.sampler = optuna.samplers.TPESampler(seed=args.seed + len(study.get_trials(deepcopy=False)))
    settings = study_settings(args, data_args, model_name_or_path)
    if not study.get_trials(deepcopy=False):
        study.set_user_attr("settings", settings)
        published = {name: spec["published"] for name, spec in args.search_space.items() if "published" in spec}
        if published:  # the first trial: the settings the method's authors published
            study.enqueue_trial(published)
    check_same_study(study, settings, args)
    target = min(args.n_trials, search_space_size(args.search_space))  # a small discrete space holds fewer settings
    remaining = target - distinct_finished(study)

    def stop_when_done(study: Any, trial: Any) -> None:
        if distinct_finished(study) >= target:
            study.stop()

    try:
        if remaining > 0:
            study.optimize(
                objective,
                n_trials=2 * remaining + 2,  # a bound: repeated draws and retried trials take slots, but not forever
                timeout=None if args.timeout_s is None else max(args.timeout_s - (time.time() - started), 0),  # Optuna's clock starts here
                callbacks=[stop_when_done],
                gc_after_trial=True,
            )
    finally:
        share(None)  # the other processes stop
    return summarize(study, args, data_args, model_name_or_path)


def search_space_size(search_space: dict[str, dict[str, Any]]) -> float:
    """How many distinct settings ``search_space`` holds (``math.inf`` with any float range), as ``suggest`` reads it."""
    size = 1.0
    for spec in search_space.values():
        if "choices" in spec:
            size *= len(spec["choices"])
        elif isinstance(spec["low"], int) and isinstance(spec["high"], int) and not spec.get("log"):
            size *= spec["high"] - spec["low"] + 1
        else:
            return math.inf
    return size


def distinct_finished(study: Any) -> int:
    """Finished (complete or pruned) trials with distinct settings: what ``n_trials`` counts. A setting tried twice
    (a study resumed by older code replayed its sampler's draws) is one trial of the search, not two."""
    import optuna

    finished = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
    return len({tuple(sorted(trial.params.items())) for trial in finished})


# Settings that do not change a trial's result: a study resumes under other values of these.
# (``attacks`` selects from the preset; what counts is the resolved ``suite``, recorded instead.)
NOT_RESULT_SETTINGS = ("n_trials", "top_k", "heartbeat_interval", "report_to", "output_dir", "storage", "attacks", "timeout_s")


def study_settings(args: SweepArguments, data_args: DataArguments, model_name_or_path: str | None) -> dict[str, Any]:
    """Everything that changes a trial's result: the sweep's settings, the data's, the model's name."""
    sweep = {name: value for name, value in asdict(args).items() if name not in NOT_RESULT_SETTINGS}
    sweep["fixed"] = without_secrets(sweep["fixed"])
    # What the preset held when the study ran: a preset that changes later (an attack added) changes the objective.
    sweep["suite"] = {name: attack for name, attack in PRESETS[args.attack_suite].items() if args.attacks is None or name in args.attacks}
    return json.loads(json.dumps({"sweep": sweep, "data": asdict(data_args), "model": model_name_or_path or "embedded"}, default=str))


def without_secrets(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with tokens (``hub_token``, ...) hidden: the study and ``best.yaml`` are files people share."""
    return {name: "<hidden>" if name.endswith("token") and value else value for name, value in settings.items()}


def _flatten(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_same_study(study: Any, settings: dict[str, Any], args: SweepArguments) -> None:
    """Refuse to add trials to a study run with other settings: its trials and ours would not be comparable."""
    stored = study.user_attrs.get("settings")
    if stored is None:
        raise ValueError(
            f"study {args.study_name!r} in {args.storage} has trials but no recorded settings (written by an older hf_unlearn): "
            "give another --study_name or --output_dir"
        )
    if stored["sweep"]["fixed"].get("disruption_budget", "unset") is None:
        # Recorded when CIR's sweeps switched its own budget off through fixed settings; every trial's is off now.
        stored = {**stored, "sweep": {**stored["sweep"], "fixed": {k: v for k, v in stored["sweep"]["fixed"].items() if k != "disruption_budget"}}}
    if "suite" not in stored["sweep"]:
        # Recorded before studies recorded their suite, when every preset attack fine-tuned: those are what it ran.
        preset = PRESETS[stored["sweep"]["attack_suite"]]
        stored = {**stored, "sweep": {**stored["sweep"], "suite": {k: v for k, v in preset.items() if "kind" not in v}}}
    before, now = _flatten(stored), _flatten(settings)
    changed = [f"{key}: {before.get(key)!r} -> {now.get(key)!r}" for key in sorted(before.keys() | now.keys()) if before.get(key) != now.get(key)]
    if changed:
        raise ValueError(
            f"study {args.study_name!r} in {args.storage} was run with other settings ({'; '.join(changed)}). Its trials would "
            "not be comparable with new ones: give another --study_name or --output_dir, or rerun with the study's settings"
        )


def summarize(study: Any, args: SweepArguments, data_args: DataArguments, model_name_or_path: str | None) -> dict[str, Any]:
    """Best trial, mean +- SEM over the top-k, a YAML for ``hf-unlearn unlearn --config``, and plots; written to ``output_dir``."""
    import optuna

    output_dir = Path(args.output_dir)
    # One trial per setting: a repeated setting (older resumed studies replayed draws) gives the same value again,
    # which would weigh the top-k mean and shrink its SEM.
    first_of_each: dict[tuple, Any] = {}
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        first_of_each.setdefault(tuple(sorted(trial.params.items())), trial)
    complete = list(first_of_each.values())
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    summary: dict[str, Any] = {"study": args.study_name, "trials": {s: states.count(s) for s in sorted(set(states))},
                               "distinct_settings": distinct_finished(study)}  # fmt: skip
    # How far beyond the budget each pruned trial went, and when: whether the search box sits where the method works.
    summary["pruned"] = [
        {"trial": t.number, "params": t.params, **{k: t.user_attrs[k] for k in ("disruption", "pruned_at_step") if k in t.user_attrs}}
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))
    ]
    if complete:
        ranked = sorted(complete, key=lambda t: t.value, reverse=args.direction == "maximize")
        top = [t.value for t in ranked[: args.top_k]]
        sem = float(torch.tensor(top).std(unbiased=False)) / math.sqrt(len(top)) if len(top) > 1 else 0.0
        best = ranked[0]
        summary.update(
            best_trial=best.number, best_value=best.value, best_params=best.params, best_attack=best.user_attrs.get("attack_best"),
            top_k=len(top), top_k_mean=sum(top) / len(top), top_k_sem=sem,
        )  # fmt: skip
        settings = {
            "method": args.method, **({"model_name_or_path": model_name_or_path} if model_name_or_path else {}),
            **asdict(ScenarioArguments.of(args, data_args)), **{k: v for k, v in args.fixed.items() if not k.endswith("token")}, **best.params, "per_device_train_batch_size": args.batch_size,
            "max_steps": best.user_attrs.get("steps", args.pass_budget), "seed": args.seed,
            "disruption_budget": None,  # as the trial ran: pruned beyond the sweep's budget, never stopped
            "output_dir": f"outputs/{args.method}_tuned_{args.scenario}",
        }  # fmt: skip
        (output_dir / "best.yaml").write_text(
            f"# {args.study_name}: best of {len(complete)} completed trials (trial {best.number}), objective {best.value:.4g}\n"
            + (f"#   hf-unlearn unlearn --config {output_dir / 'best.yaml'} --forget_pool test   (held-out documents; 'all': every one)\n"
               if args.scenario == "code" else
               f"#   hf-unlearn unlearn --config {output_dir / 'best.yaml'}   (the facts scenario: every known fact; split B held out)\n")
            + yaml.safe_dump(settings, sort_keys=False)
        )
        plot_study(study, output_dir)
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def plot_study(study: Any, output_dir: Path) -> None:
    """PNGs of the trials' objective values and of the parameter importances (when two or more trials completed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    import optuna.visualization.matplotlib as vis

    plots = {"trials": vis.plot_optimization_history}
    if sum(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)) >= 2:
        plots["importances"] = vis.plot_param_importances
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():  # optuna's matplotlib plots are marked experimental
                warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
                axis = plot(study)
        except (ValueError, RuntimeError):  # e.g. importances of a single-valued parameter
            continue
        axis.figure.tight_layout()
        axis.figure.savefig(output_dir / f"{name}.png", dpi=110)
        plt.close(axis.figure)
