"""The sweep: resumable studies, pruning on the disruption budget, a summary ready for recipes/unlearn.py."""

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import write_local_files

from hf_unlearn.commands import unlearn as unlearn_command
from hf_unlearn.sweep import SweepArguments, around, run_sweep

HERE = Path(__file__).resolve().parent


@pytest.fixture
def setup(tmp_path):
    model_dir, data = write_local_files(tmp_path)
    sweep = dict(
        method="mudman", scenario="code", n_trials=3, pass_budget=8, eval_steps=1, attack_suite="quick", attack_steps=2,
        batch_size=4, output_dir=str(tmp_path / "sweep"), heartbeat_interval=1, disruption_budget=10.0,
        search_space={"unlearning_rate": {"low": 1e-4, "high": 1e-3, "log": True}},
    )  # fmt: skip
    return model_dir, data, sweep


def trials(args: SweepArguments) -> list:
    return optuna.load_study(study_name=args.study_name, storage=args.storage).get_trials()


def test_a_sweep_killed_in_its_second_trial_resumes_without_recomputing_the_first(setup):
    model_dir, data, settings = setup
    killed = subprocess.run(
        [sys.executable, str(HERE / "sweep_kill.py"), json.dumps(settings), json.dumps(dataclasses.asdict(data)), str(model_dir)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert killed.returncode == 3, killed.stderr[-3000:]
    args = SweepArguments(**settings)
    before = trials(args)
    assert [t.state.name for t in before] == ["COMPLETE", "RUNNING"], "killed in the middle of trial 1"
    time.sleep(4)  # well past the grace period of two heartbeats (2 s): the trial is stale, even on a loaded machine

    summary = run_sweep(args, data, str(model_dir))
    after = trials(args)
    assert [t.state.name for t in after].count("COMPLETE") == 3 and after[1].state.name == "FAIL", "recorded as failed"
    first = after[0]
    assert first.datetime_complete == before[0].datetime_complete and first.value == before[0].value, "not recomputed"
    assert summary["trials"] == {"COMPLETE": 3, "FAIL": 1} and summary["top_k"] == 3
    assert after[2].params == after[1].params, "the killed trial's settings run again"
    assert all(t.user_attrs["passes"] >= 8 and "attack" in t.user_attrs["attack_best"] for t in after if t.state.name == "COMPLETE")

    # The best settings come out as a config recipes/unlearn.py parses.
    best = Path(settings["output_dir"]) / "best.yaml"
    _, parsed_data, config, _ = unlearn_command.make_parser(unlearn_command.method_config_class(["--config", str(best)])).parse_args_and_config(["--config", str(best)])
    assert config.method == "mudman" and config.unlearning_rate == summary["best_params"]["unlearning_rate"]
    # As its trial ran: pruned beyond the sweep's budget, never stopped (CIR's default budget would stop it).
    assert "disruption_budget" in yaml.safe_load(best.read_text()) and config.disruption_budget is None
    assert parsed_data.forget_source == data.forget_source
    assert (Path(settings["output_dir"]) / "trials.png").is_file()
    assert run_sweep(args, data, str(model_dir))["trials"] == summary["trials"], "a finished study runs no more trials"
    # Its trials and new ones would not be comparable: refused before any trial, naming the change.
    with pytest.raises(ValueError, match=r"sweep\.fixed\.retain_momentum: None -> 0\.5"):
        run_sweep(SweepArguments(**{**settings, "n_trials": 5, "fixed": {"retain_momentum": 0.5}}), data, str(model_dir))
    assert len(trials(args)) == len(after)
    # Tokens given as fixed settings reach neither the study nor best.yaml (files people share).
    secret = SweepArguments(**{**settings, "output_dir": str(Path(settings["output_dir"]) / "secret"), "n_trials": 1,
                               "fixed": {"hub_token": "hf_secret_do_not_save"}})  # fmt: skip
    run_sweep(secret, data, str(model_dir))
    written = [p for p in Path(secret.output_dir).rglob("*") if p.is_file() and p.suffix in (".db", ".yaml", ".json")]
    assert written and not [p for p in written if b"hf_secret_do_not_save" in p.read_bytes()]


def test_a_trial_beyond_the_disruption_budget_is_pruned(setup, memorised):
    model_dir, data, settings = setup
    memorised[0].save_pretrained(model_dir)  # a model that knows the retain text: unlearning raises its loss
    args = SweepArguments(**{**settings, "n_trials": 1, "disruption_budget": 1e-9, "search_space": {"unlearning_rate": around(0.05)}})
    summary = run_sweep(args, data, str(model_dir))
    (trial,) = trials(args)
    assert trial.state.name == "PRUNED" and summary["trials"] == {"PRUNED": 1}
    assert trial.params == {"unlearning_rate": 0.05}, "the first trial takes the published value"
    assert trial.user_attrs["disruption"] > 1e-9 and trial.user_attrs["pruned_at_step"] > 0, "how far and when"
    assert summary["pruned"] == [{"trial": 0, "params": trial.params, "disruption": trial.user_attrs["disruption"],
                                  "pruned_at_step": trial.user_attrs["pruned_at_step"]}], "reported in summary.json"  # fmt: skip
    assert not trial.intermediate_values, "the forget metric rises with disruption: it must not rank a pruned trial"
    assert not (Path(settings["output_dir"]) / "trials" / "trial-0000" / "attacks").exists(), "a pruned trial is not attacked"
    assert yaml.safe_load(json.dumps(summary)) == summary


def test_training_flags_given_to_sweep_name_what_it_takes_instead():
    from hf_unlearn.commands.sweep import main as sweep_command

    with pytest.raises(ValueError, match=r"--pass_budget, --batch_size.*--fixed"):
        sweep_command(["--method", "mudman", "--max_steps", "2", "--per_device_train_batch_size", "4"])


def test_the_disruption_budget_is_the_sweeps_own_and_older_cir_studies_resume(tmp_path):
    """Every trial is held to the sweep's --disruption_budget (pruned beyond it); the method's own budget is off in trials,
    so it cannot be tuned or fixed. CIR studies recorded when CIR's sweep switched its budget off by a fixed setting resume."""
    from types import SimpleNamespace

    from hf_unlearn.data import DataArguments
    from hf_unlearn.sweep import check_same_study, study_settings

    with pytest.raises(ValueError, match="disruption_budget cannot be tuned or fixed: it is the sweep's own --disruption_budget"):
        SweepArguments(method="cir", fixed={"disruption_budget": 0.01}, output_dir=str(tmp_path))
    args = SweepArguments(method="cir", scenario="facts", disruption_unit="relative", disruption_budget=0.001, output_dir=str(tmp_path))
    assert "disruption_budget" not in args.fixed
    settings = study_settings(args, DataArguments(), None)
    older = json.loads(json.dumps(settings))
    older["sweep"]["fixed"]["disruption_budget"] = None
    check_same_study(SimpleNamespace(user_attrs={"settings": older}), settings, args)
    older["sweep"]["fixed"]["disruption_budget"] = 0.5  # a budget that did change the trials
    with pytest.raises(ValueError, match="fixed.disruption_budget: 0.5 -> None"):
        check_same_study(SimpleNamespace(user_attrs={"settings": older}), settings, args)


def test_a_resumed_sweep_draws_settings_it_has_not_tried(setup):
    """A resumed study's sampler, seeded as the first one was, replayed its draws: the MUDMAN study of the quality
    benchmark ran 4 of its 10 settings twice. n_trials counts distinct settings."""
    model_dir, data, settings = setup
    run_sweep(SweepArguments(**{**settings, "n_trials": 2}), data, str(model_dir))
    summary = run_sweep(SweepArguments(**{**settings, "n_trials": 3}), data, str(model_dir))
    finished = [t for t in trials(SweepArguments(**settings)) if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 3 and len({t.params["unlearning_rate"] for t in finished}) == 3
    assert summary["distinct_settings"] == 3


def test_a_discrete_space_smaller_than_n_trials_ends(setup):
    """n_trials counts distinct settings: a space of 2 settings ends at 2 instead of drawing them forever."""
    model_dir, data, settings = setup
    args = SweepArguments(**{**settings, "n_trials": 4, "search_space": {"unlearning_rate": {"choices": [1e-4, 1e-3]}}})
    summary = run_sweep(args, data, str(model_dir))
    assert summary["distinct_settings"] == 2 and summary["top_k"] == 2, "the top-k holds each setting once"
    count = len(trials(args))
    assert run_sweep(args, data, str(model_dir))["distinct_settings"] == 2 and len(trials(args)) == count, "a rerun adds nothing"


def test_a_timeout_starts_no_trial_after_it_and_the_same_command_continues(setup):
    model_dir, data, settings = setup
    args = SweepArguments(**{**settings, "n_trials": 1, "timeout_s": 0.0})
    assert run_sweep(args, data, str(model_dir))["trials"] == {} and not trials(args), "model loading used up the time"
    assert run_sweep(dataclasses.replace(args, timeout_s=None), data, str(model_dir))["trials"] == {"COMPLETE": 1}, "a timeout is not a setting"


def test_a_nan_retain_loss_is_beyond_every_budget(tmp_path):
    """A NaN retain loss counted as within budget, for the budget callback and for the sweep's pruning."""
    from hf_unlearn.evaluation.disruption import DisruptionBudget
    from hf_unlearn.sweep import BudgetPruning

    budget = DisruptionBudget(0.05, "nats")
    assert budget.exceeded(3.0, float("nan")) and budget.exceeded(3.0, float("inf")) and not budget.exceeded(3.0, 3.04)
    pruning = BudgetPruning(optuna.trial.FixedTrial({}), SweepArguments(output_dir=str(tmp_path)))
    pruning.check({"eval_retain_loss": 3.0}, 0)
    with pytest.raises(optuna.TrialPruned):
        pruning.check({"eval_retain_loss": float("nan")}, 10)


def test_a_trial_whose_attacks_all_diverged_is_pruned_not_scored(setup, monkeypatch):
    """Scored as "nothing recovered", it made best.yaml favour settings that break the attacks."""
    import hf_unlearn.sweep
    from hf_unlearn.attacks import AttackSuiteResult

    start = {"step": 0, "forget_loss": 5.0, "retain_loss": 3.0}
    broken = {"kind": "fine_tune", "settings": "", "curve": [start, {"step": 2, "forget_loss": 1.0, "retain_loss": 9.0, "diverged": True}],
              "best": start, "diverged_at": 2}  # fmt: skip
    monkeypatch.setattr(hf_unlearn.sweep, "attack", lambda *args, **kwargs: AttackSuiteResult("forget_loss", False, {"sgd": broken}))
    model_dir, data, settings = setup
    args = SweepArguments(**{**settings, "n_trials": 1})
    summary = run_sweep(args, data, str(model_dir))
    assert [t.state.name for t in trials(args)] == ["PRUNED"] and "best_trial" not in summary
    assert not (Path(settings["output_dir"]) / "best.yaml").exists()


def test_a_minimizing_sweep_names_its_lowest_trial_best(tmp_path):
    """Facts sweeps minimise split-B accuracy; a ranking fixed to descending named the worst trial best."""
    from hf_unlearn.data import DataArguments
    from hf_unlearn.sweep import summarize

    args = SweepArguments(method="mudman", scenario="facts", output_dir=str(tmp_path), top_k=2,
                          search_space={"unlearning_rate": {"low": 1e-4, "high": 1e-2, "log": True}})  # fmt: skip
    assert args.direction == "minimize"
    study = optuna.create_study(direction=args.direction)
    distribution = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    for rate, accuracy in ((1e-4, 0.9), (1e-3, 0.2), (1e-2, 0.5)):
        study.add_trial(optuna.trial.create_trial(params={"unlearning_rate": rate}, distributions={"unlearning_rate": distribution}, value=accuracy))
    summary = summarize(study, args, DataArguments(), None)
    assert summary["best_value"] == 0.2 and summary["best_params"] == {"unlearning_rate": 1e-3}
    assert summary["top_k_mean"] == pytest.approx(0.35), "the two lowest"
    assert yaml.safe_load((tmp_path / "best.yaml").read_text())["unlearning_rate"] == 1e-3
