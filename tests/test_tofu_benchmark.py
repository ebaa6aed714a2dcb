"""benchmarks/tofu.py resumes: a tuned method's rows are read back while its quality evaluation is unchanged."""

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("tofu_benchmark", HERE.parent / "benchmarks" / "tofu.py")
tofu = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tofu)


class Unlearned(Exception):
    """Raised by the stand-in of ``unlearn``: the method was computed again."""


def test_rows_of_an_unchanged_evaluation_are_read_back_and_a_changed_one_is_scored_again(tmp_path, monkeypatch):
    args = argparse.Namespace(quality_dir=str(tmp_path), scale="default")
    best = {"attack": "sgd_3e-3_noclip", "step": 30, "facts_accuracy": 1.0}
    evaluation = {"settings": {"unlearning_rate": 2e-5}, "after_unlearning": {"facts_accuracy": 1.0}, "attack_best": best}
    path = tmp_path / "fictitious" / "mudman" / "evaluation.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(evaluation))
    inputs = {"settings": evaluation["settings"], "attack_best": {**best, "variant": None}}
    recorded = {"mudman": {"forget_quality": 0.5, "inputs": inputs}, "mudman at the attacker's best": {"forget_quality": 0.25}}

    def unlearn(*args, **kwargs):
        raise Unlearned

    monkeypatch.setattr(tofu, "unlearn", unlearn)
    monkeypatch.setattr(tofu.quality, "held_out_scenario", lambda *a: (None, None, 0))
    monkeypatch.setattr(tofu.quality, "held_out_config", lambda *a: None)
    monkeypatch.setattr(tofu, "load_model", lambda path: (None, None, None))
    assert dict(tofu.tuned_rows(args, None, "target", recorded)) == recorded

    path.write_text(json.dumps({**evaluation, "settings": {"unlearning_rate": 3e-5}}))  # re-tuned since
    with pytest.raises(Unlearned):
        list(tofu.tuned_rows(args, None, "target", recorded))


def test_rows_scored_on_another_build_of_the_target_or_the_oracle_are_not_read_back():
    terms = {"seed": 0, "questions": {"forget": 40}, "models": {"target": "aa", "oracle": "bb"}, "scale": "default"}
    previous = {**terms, "rows": {"mudman": {"forget_quality": 0.5}}}
    assert tofu.recorded_rows(previous, {**terms, "rows": {}}) == previous["rows"]
    for name in ("target", "oracle"):
        rebuilt = {**terms, "models": {**terms["models"], name: "cc"}, "rows": {}}
        assert tofu.recorded_rows(previous, rebuilt) == {}
    assert tofu.recorded_rows({**previous, "scale": "smoke"}, {**terms, "rows": {}}) == {}
