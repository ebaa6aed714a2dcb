"""The quality benchmark's state: a kill loses only the work in progress, and state from other settings is refused."""

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from conftest import write_local_files

from hf_unlearn.attacks import PRESETS

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("quality", HERE.parent / "benchmarks" / "quality.py")
quality = importlib.util.module_from_spec(spec)
spec.loader.exec_module(quality)


def test_state_from_other_settings_is_refused_naming_what_changed(tmp_path):
    quality.check_state(quality.parse_args(["--output_dir", str(tmp_path)]))
    quality.check_state(quality.parse_args(["--output_dir", str(tmp_path), "--methods", "npo"]))  # which studies run: not a setting
    with pytest.raises(SystemExit) as refused:
        quality.check_state(quality.parse_args(["--output_dir", str(tmp_path), "--budget_nats", "0.1"]))
    assert "budget_nats: 0.05 -> 0.1" in str(refused.value) and "--output_dir" in str(refused.value)
    settings = json.loads((tmp_path / "settings.json").read_text())
    assert settings["budget_nats"] == 0.05 and settings["scale"]["pass_budget"] == quality.SCALES["default"]["pass_budget"]


def test_killed_during_an_evaluation_it_resumes_without_recomputing_trials_or_evaluations(tmp_path):
    model_dir, data = write_local_files(tmp_path)
    output_dir = tmp_path / "quality"
    arguments = ["--quick", "--scenarios", "code", "--methods", "graddiff", "--model", str(model_dir), "--output_dir", str(output_dir)]
    # Fine-tuning attacks 1-2: the untouched model's evaluation; 3-4: graddiff's one trial; 5: its evaluation's first; 6: killed.
    killed = subprocess.run([sys.executable, str(HERE / "quality_kill.py"), "6", *arguments], capture_output=True, text=True, timeout=600)
    assert killed.returncode == 3, killed.stderr[-3000:]
    baseline = output_dir / "code" / "no_unlearning" / "evaluation.json"
    first_attack = output_dir / "code" / "graddiff" / "attacks" / "lora_1e-3" / "attack_result.json"
    assert baseline.is_file() and first_attack.is_file() and not (output_dir / "code" / "graddiff" / "evaluation.json").exists()
    storage = f"sqlite:///{output_dir / 'code' / 'graddiff' / 'sweep' / 'study.db'}"
    (trial,) = optuna.load_study(study_name="graddiff-code", storage=storage).get_trials()
    written = {path: path.stat().st_mtime_ns for path in (baseline, first_attack)}

    quality.main(arguments)
    assert [t.datetime_complete for t in optuna.load_study(study_name="graddiff-code", storage=storage).get_trials()] == [trial.datetime_complete]
    assert {path: path.stat().st_mtime_ns for path in written} == written, "the finished evaluation and attack were read back"
    evaluation = json.loads((output_dir / "code" / "graddiff" / "evaluation.json").read_text())
    assert evaluation["attacks"]["attacks"].keys() == PRESETS["quick"].keys() and evaluation["settings"] == trial.params
    assert "| graddiff |" in (output_dir / "quality.md").read_text()


def test_facts_methods_are_also_evaluated_on_a_fact_set_tuning_never_saw(tmp_path, monkeypatch):
    """Each facts method is evaluated on the capitals' held-out partition and on the US state capitals; a state with
    only the first evaluation computes only the second (the sweep is read back, not rerun)."""
    args = quality.parse_args(["--output_dir", str(tmp_path), "--scenarios", "facts", "--methods", "mudman"])
    for name in ("no_unlearning", "mudman"):  # both tuned with the scale's 10 trials
        quality.write_json(quality.evaluation_path(args, "facts", name), {"name": name, "tuning": {"trials": {"COMPLETE": 10}}})
    calls = []
    monkeypatch.setattr(quality, "run_sweep", lambda *a: {"best_params": {}})
    monkeypatch.setattr(quality, "evaluate", lambda args, scale, name, scenario, best, fact_set=None: calls.append((name, fact_set)) or
                        quality.write_json(quality.evaluation_path(args, scenario, name, fact_set), {"name": name, "metric": "facts_accuracy"}))
    monkeypatch.setattr(quality, "write", lambda args: None)
    quality.run(args)
    assert calls == [("no_unlearning", "us_state_capitals"), ("mudman", "us_state_capitals")]
    assert list(quality.collect(args)) == ["facts", "facts (us_state_capitals, never tuned on)"]


def test_a_fictitious_row_evaluated_on_an_earlier_build_of_its_model_is_evaluated_again(tmp_path, monkeypatch):
    """The target and the oracle are rebuilt when their cache is gone, and a rebuild on another machine differs: a row
    evaluated on other weights than the current build's is evaluated again; one on the current build is kept."""
    args = quality.parse_args(["--output_dir", str(tmp_path), "--scenarios", "fictitious", "--methods", "mudman"])
    models = {}
    for name, content in (("target", b"target weights"), ("oracle", b"oracle weights")):
        models[name] = tmp_path / "models" / name
        models[name].mkdir(parents=True)
        (models[name] / "model.safetensors").write_bytes(content)
    monkeypatch.setattr(quality, "oracle_models", lambda seed: models)
    current = quality.saved_weights_digest(models["target"])
    quality.write_json(quality.evaluation_path(args, "fictitious", "no_unlearning"), {"name": "no_unlearning", "model_sha256": current})
    quality.write_json(quality.evaluation_path(args, "fictitious", "oracle"), {"name": "oracle", "model_sha256": current})
    quality.write_json(quality.evaluation_path(args, "fictitious", "mudman"), {"name": "mudman", "tuning": {"trials": {"COMPLETE": 10}}})
    monkeypatch.setattr(quality, "run_sweep", lambda *a: {"best_params": {}})
    calls = []
    monkeypatch.setattr(quality, "evaluate", lambda args, scale, name, scenario, best, fact_set=None: calls.append(name) or
                        quality.write_json(quality.evaluation_path(args, scenario, name), {"name": name}))
    monkeypatch.setattr(quality, "write", lambda args: None)
    quality.run(args)
    assert calls == ["oracle", "mudman"], "the oracle's was of the target's weights, MUDMAN's of no recorded build"


def test_a_study_without_a_finished_trial_is_a_row_and_more_trials_re_evaluate(tmp_path, monkeypatch):
    """Every trial pruned left no best_params, and the evaluation's KeyError stopped the worker at that method for good;
    an evaluation tuned with fewer trials than the scale asks is redone (the study resumes) instead of kept."""
    args = quality.parse_args(["--output_dir", str(tmp_path), "--scenarios", "code", "--methods", "graddiff", "npo"])
    untouched = {"name": "no_unlearning", "metric": "forget_loss", "after_unlearning": {"forget_loss": 3.0}, "attack_best": None}
    quality.write_json(quality.evaluation_path(args, "code", "no_unlearning"), untouched)
    quality.write_json(quality.evaluation_path(args, "code", "npo"), {"name": "npo", "tuning": {"trials": {"COMPLETE": 3}}})
    swept = []
    monkeypatch.setattr(quality, "run_sweep", lambda sweep_args, *a: swept.append(sweep_args.method) or {"trials": {"PRUNED": 10}})
    monkeypatch.setattr(quality, "write", lambda args: None)
    quality.run(args)
    assert swept == ["graddiff", "npo"], "npo had 3 of 10 trials: re-tuned"
    rows = quality.collect(args)["code"]
    assert rows["graddiff"]["after_unlearning"] is None and rows["npo"]["tuning"]["trials"] == {"PRUNED": 10}
    assert "| graddiff | no trial finished within the disruption budget |" in quality.markdown(args, quality.collect(args))


def test_studies_begun_before_sweeps_recorded_their_suite_still_resume(tmp_path):
    """The committed studies predate the suite in the study settings (and quick's 4-bit attack): they resume with
    the attacks they ran, and are refused with the 4-bit attack added; an evaluation run before its suite gained
    attacks is redone."""
    from hf_unlearn.sweep import check_same_study, study_settings

    args = quality.parse_args(["--output_dir", str(tmp_path)])
    scale = quality.SCALES["default"]
    sweep_args = quality.sweep_arguments(args, scale, "mudman", "code")
    data_args = quality.data_arguments(scale, "tuning", args.seed)
    Path(sweep_args.output_dir).mkdir(parents=True)
    old = study_settings(sweep_args, data_args, args.model)
    del old["sweep"]["suite"]
    study = optuna.create_study(study_name=sweep_args.study_name, storage=sweep_args.storage)
    study.set_user_attr("settings", old)
    check_same_study(study, study_settings(sweep_args, data_args, args.model), sweep_args)
    every_quick_attack = replace(sweep_args, attacks=None)
    with pytest.raises(ValueError, match="sweep.suite.quantize_int4"):
        check_same_study(study, study_settings(every_quick_attack, data_args, args.model), every_quick_attack)

    evaluation = quality.evaluation_path(args, "code", "mudman")
    quality.write_json(evaluation, {"attacks": {"attacks": {name: {} for name in PRESETS["standard"] if name != "prompt"}}})
    assert quality.lacks_attacks(evaluation, scale)
    quality.write_json(evaluation, {"attacks": {"attacks": {name: {} for name in PRESETS["standard"]}}})
    assert not quality.lacks_attacks(evaluation, scale)


@pytest.mark.parametrize("scenario", ["code", "facts"])
def test_every_method_builds_its_held_out_config(tmp_path, scenario):
    """CIR's held-out evaluation crashed before it ran: its sweep's fixed eval_strategy met the evaluation's own."""
    args = quality.parse_args(["--output_dir", str(tmp_path), "--scale", "extended"])
    scale = quality.SCALES["extended"]
    for name in quality.METHODS:
        sweep_args = quality.sweep_arguments(args, scale, name, scenario)
        published = {field: spec["published"] for field, spec in sweep_args.search_space.items() if "published" in spec}
        config = quality.held_out_config(name, scale, sweep_args.fixed, published, str(tmp_path / name), 0)
        assert config.eval_strategy == "no" and config.disruption_budget is None and config.max_passes == scale["pass_budget"], name
        assert all(getattr(config, field) == value for field, value in {**sweep_args.fixed, **published}.items() if field != "eval_strategy"), name
    for key, attempt in quality.ATTEMPTS.items():  # and every attempt's: longer, evaluated, stopped at its budget
        sweep_args = quality.sweep_arguments(args, scale, attempt.name, scenario)
        published = {field: spec["published"] for field, spec in sweep_args.search_space.items() if "published" in spec}
        overrides = quality.attempt_settings(args, scale, scenario, attempt)
        config = quality.held_out_config(attempt.name, scale, sweep_args.fixed, published, str(tmp_path / key), 0, overrides)
        assert config.max_passes == attempt.pass_factor * scale["pass_budget"] and config.eval_strategy == "steps", key
        assert config.disruption_budget == attempt.budget_factor * (args.budget_nats if scenario == "code" else args.budget_relative), key


def test_fictitious_studies_search_ten_times_the_published_step_size_and_nothing_else_moves(tmp_path):
    args = quality.parse_args(["--output_dir", str(tmp_path)])
    scale = quality.SCALES["default"]
    mudman = quality.sweep_arguments(args, scale, "mudman", "fictitious").search_space
    assert mudman["unlearning_rate"] == {"low": 2e-5, "high": pytest.approx(2e-3), "log": True, "published": pytest.approx(2e-4)}
    for name in quality.METHODS:
        step_size = quality.get_method(quality.METHODS[name][0]).step_size_setting
        published = quality.sweep_arguments(args, scale, name, "facts").search_space
        moved = quality.sweep_arguments(args, scale, name, "fictitious").search_space
        assert moved[step_size]["published"] == pytest.approx(10 * published[step_size]["published"]), name
        assert {k: v for k, v in moved.items() if k != step_size} == {k: v for k, v in published.items() if k != step_size}, name
        assert quality.sweep_arguments(args, scale, name, "code").search_space == published == quality.METHODS[name][2], name


def test_an_evaluation_tuned_on_repeated_settings_is_re_tuned(tmp_path, monkeypatch):
    """Older sweeps counted a setting tried twice as two trials: an evaluation whose study holds fewer distinct
    settings than the scale's trials is redone after the study runs the missing ones."""
    args = quality.parse_args(["--output_dir", str(tmp_path), "--scenarios", "code", "--methods", "mudman"])
    scale = quality.SCALES["default"]
    sweep_args = quality.sweep_arguments(args, scale, "mudman", "code")
    Path(sweep_args.output_dir).mkdir(parents=True)
    study = optuna.create_study(study_name=sweep_args.study_name, storage=sweep_args.storage, direction="maximize")
    rate = optuna.distributions.FloatDistribution(1e-6, 1e-3, log=True)
    for value in [1e-5, 2e-5, 3e-5, 4e-5, 5e-5, 6e-5, 2e-5, 3e-5, 4e-5, 5e-5]:  # 10 finished, 6 distinct
        study.add_trial(optuna.trial.create_trial(params={"unlearning_rate": value}, distributions={"unlearning_rate": rate}, value=3.0))
    quality.write_json(quality.evaluation_path(args, "code", "no_unlearning"), {"name": "no_unlearning", "attacks": {"attacks": dict.fromkeys(PRESETS["standard"], {})}})
    evaluation = quality.evaluation_path(args, "code", "mudman")
    quality.write_json(evaluation, {"name": "mudman", "tuning": {"trials": {"COMPLETE": 10}}, "attacks": {"attacks": dict.fromkeys(PRESETS["standard"], {})}})
    assert quality.tuned_with(evaluation, sweep_args) == 6
    swept = []
    monkeypatch.setattr(quality, "run_sweep", lambda sweep_args, *a: swept.append(sweep_args.method) or {"best_params": {}})
    monkeypatch.setattr(quality, "evaluate", lambda args, scale, name, scenario, best, fact_set=None: quality.write_json(
        quality.evaluation_path(args, scenario, name, fact_set), {"name": name, "tuning": {"distinct_settings": 10}}))
    monkeypatch.setattr(quality, "write", lambda args: None)
    quality.run(args)
    assert swept == ["mudman"] and json.loads(evaluation.read_text())["tuning"] == {"distinct_settings": 10}, "re-tuned, re-evaluated"


def test_cir_unlearns_few_enough_chunks_to_leave_its_statistics_epoch():
    """Within the pass budget CIR never left its first epoch (statistics only) on the code scenario's unlearn split,
    and changed nothing; the evaluation sets stay everyone's."""
    scale = quality.SCALES["default"]
    cir, mudman = quality.data_arguments(scale, "test", 0, "cir"), quality.data_arguments(scale, "test", 0, "mudman")
    steps_per_epoch = quality.CIR_UNLEARN_EXAMPLES / scale["batch_size"]
    assert cir.max_unlearn_examples == quality.CIR_UNLEARN_EXAMPLES and scale["pass_budget"] / 5 >= 5 * steps_per_epoch, "5 passes a step"
    assert mudman.max_unlearn_examples is None and quality.data_arguments(scale, "test", 0, "no_unlearning").max_unlearn_examples is None
    assert {k: v for k, v in vars(cir).items() if k != "max_unlearn_examples"} == {k: v for k, v in vars(mudman).items() if k != "max_unlearn_examples"}


def test_an_attempt_runs_the_tuned_settings_longer_and_stops_at_its_budget(tmp_path, monkeypatch):
    """An attempt at a missed target reads its method's tuned settings, runs pass_factor times the pass budget with a
    stop at budget_factor times the disruption budget, is attacked like an evaluation, and is its own table."""
    model_dir, _ = write_local_files(tmp_path)
    output_dir = tmp_path / "quality"
    monkeypatch.setitem(quality.ATTEMPTS, "graddiff_longer", quality.Attempt("graddiff", "longer", pass_factor=3, budget_factor=1e6))
    monkeypatch.setitem(quality.ATTEMPTS, "graddiff_stopped", quality.Attempt("graddiff", "stopped", pass_factor=3, budget_factor=1e-6))
    arguments = ["--quick", "--scenarios", "code", "--model", str(model_dir), "--output_dir", str(output_dir)]
    args = quality.parse_args(arguments)
    quality.main([*arguments, "--attempts", "graddiff_longer"])
    assert not list(output_dir.rglob("attempts")), "no tuned settings yet: skipped, nothing run"
    untouched = {"name": "no_unlearning", "metric": "forget_loss", "after_unlearning": {"forget_loss": 3.0},
                 "attack_best": {"forget_loss": 2.0, "attack": "lora_1e-3", "retain_loss": 3.0}}
    quality.write_json(quality.evaluation_path(args, "code", "no_unlearning"), untouched)
    tuned = {**untouched, "name": "graddiff", "settings": {"learning_rate": 1e-2, "retaining_rate": 0.0}, "tuning": {"best_value": 3.3, "trials": {"COMPLETE": 1}}}
    quality.write_json(quality.evaluation_path(args, "code", "graddiff"), tuned)

    quality.main([*arguments, "--attempts", "graddiff_longer", "graddiff_stopped"])
    longer, stopped = (json.loads(quality.attempt_path(args, "code", key).read_text()) for key in ("graddiff_longer", "graddiff_stopped"))
    pass_budget = quality.SCALES["quick"]["pass_budget"]
    assert longer["settings"] == stopped["settings"] == {"learning_rate": 1e-2, "retaining_rate": 0.0}
    assert longer["attempt"]["max_passes"] == 3 * pass_budget and longer["unlearning"]["passes"] > pass_budget
    assert longer["unlearning"]["beyond_budget_at"] is None and longer["unlearning"]["kept_step"] == longer["unlearning"]["steps"]
    assert stopped["unlearning"]["beyond_budget_at"]["step"] == quality.SCALES["quick"]["unlearn_eval_steps"]
    assert stopped["unlearning"]["kept_step"] == 0 and stopped["after_unlearning"] != longer["after_unlearning"]
    assert longer["attacks"]["attacks"].keys() == PRESETS["quick"].keys()
    assert not [p for p in output_dir.rglob("*") if p.suffix == ".safetensors"], "the budget stop's weights stay out of the state"
    table = (output_dir / "quality.md").read_text()
    assert "### code (attempts beyond the comparison: ATTEMPTS)" in table and "| graddiff_longer |" in table and "| no_unlearning |" in table
    assert f"- `graddiff_stopped`: stopped ({3 * pass_budget} passes" in table and "kept step 0" in table


def test_a_time_limit_bounds_the_studies_and_starts_nothing_after_it(tmp_path, monkeypatch):
    """--time_limit_minutes (a GPU lease's one run): the study gets the time left as its timeout, and once the limit
    is up no study or evaluation starts; the same command continues."""
    args = quality.parse_args(["--output_dir", str(tmp_path), "--scenarios", "code", "--methods", "graddiff", "--time_limit_minutes", "10"])
    quality.write_json(quality.evaluation_path(args, "code", "no_unlearning"), {"name": "no_unlearning"})
    timeouts, evaluated = [], []
    monkeypatch.setattr(quality, "run_sweep", lambda sweep_args, *a: timeouts.append(sweep_args.timeout_s) or {"best_params": {}})
    monkeypatch.setattr(quality, "evaluate", lambda args, scale, name, *a, **k: evaluated.append(name))
    monkeypatch.setattr(quality, "write", lambda args: None)
    quality.run(args)
    assert evaluated == ["graddiff"] and len(timeouts) == 1 and 590 < timeouts[0] <= 600
    args.deadline = time.time() - 1
    quality.run(args)
    assert evaluated == ["graddiff"] and len(timeouts) == 1, "the limit is up: nothing more starts"


def test_an_attempt_is_redone_when_its_method_was_re_tuned(tmp_path, monkeypatch):
    args = quality.parse_args(["--output_dir", str(tmp_path), "--scenarios", "code", "--attempts", "mudman_10x_passes"])
    scale, redone = quality.SCALES["default"], []
    monkeypatch.setattr(quality, "evaluate", lambda *a, attempt=None, **k: redone.append(a[3]))
    monkeypatch.setattr(quality, "write", lambda args: None)
    tuned = {"settings": {"unlearning_rate": 1e-4}, "tuning": {}}
    quality.write_json(quality.evaluation_path(args, "code", "mudman"), tuned)
    finished = {"settings": tuned["settings"], "attempt": quality.attempt_record(args, scale, "code", "mudman_10x_passes"),
                "attacks": {"attacks": dict.fromkeys(PRESETS["standard"], {})}}  # fmt: skip
    quality.write_json(quality.attempt_path(args, "code", "mudman_10x_passes"), finished)
    quality.run_attempts(args)
    assert redone == [], "the same settings, attempt and suite: read back"
    quality.write_json(quality.evaluation_path(args, "code", "mudman"), {**tuned, "settings": {"unlearning_rate": 2e-4}})
    quality.run_attempts(args)
    assert redone == ["code"] and not quality.attempt_path(args, "code", "mudman_10x_passes").exists()


def test_readme_tables_are_what_the_committed_state_prints_without_computing(tmp_path, monkeypatch, capsys):
    """The acceptance of the comparison: `python benchmarks/quality.py` on a clone computes nothing (every study and
    held-out evaluation is committed) and prints README's tables."""
    state = tmp_path / "quality"
    shutil.copytree(quality.RESULTS, state)

    def computing(*args, **kwargs):
        raise AssertionError("the committed state lacks a study or an evaluation: it would compute")

    monkeypatch.setattr(quality, "run_sweep", computing)
    monkeypatch.setattr(quality, "evaluate", computing)
    quality.main(["--output_dir", str(state)])
    printed = capsys.readouterr().out.strip()
    args = quality.parse_args(["--output_dir", str(state)])
    for scenario in ("code", "facts"):  # and every finished attempt is current (its method not re-tuned since)
        attempts = [key for key in quality.ATTEMPTS if quality.attempt_path(args, scenario, key).is_file()]
        quality.run_attempts(quality.parse_args(["--output_dir", str(state), "--scenarios", scenario, "--attempts", *attempts]))
    tables = quality.readme_tables()
    assert tables == printed[printed.index("Scale `default`") :], "README's tables are not the state's: --report --update_readme"
    for scenario in ("code", "facts"):
        table = tables.split(f"### {scenario}: ")[1].split("###")[0]
        assert all(f"| {name} |" in table for name in ["no_unlearning", *quality.SCALES["default"]["methods"]])


def test_update_readme_rewrites_only_the_tables(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{quality.README_TABLES[0]}\nold\n{quality.README_TABLES[1]}\nafter\n")
    quality.update_readme("| new |", readme)
    assert readme.read_text() == f"before\n{quality.README_TABLES[0]}\n\n| new |\n\n{quality.README_TABLES[1]}\nafter\n"
    assert quality.readme_tables(readme) == "| new |"
    readme.write_text(f"{quality.README_TABLES[1]}\n{quality.README_TABLES[0]}\n")
    with pytest.raises(SystemExit, match="no quality-table lines"):
        quality.readme_tables(readme)
    with pytest.raises(SystemExit):
        quality.parse_args(["--report", "--update_readme", "--quick"])
