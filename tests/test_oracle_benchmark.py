"""benchmarks/oracle.py's pieces: resuming from the last complete checkpoint and the checks on finished models."""

import importlib.util
import json
from pathlib import Path

spec = importlib.util.spec_from_file_location("oracle", Path(__file__).resolve().parents[1] / "benchmarks" / "oracle.py")
oracle = importlib.util.module_from_spec(spec)
spec.loader.exec_module(oracle)


def test_resume_skips_and_removes_checkpoints_a_kill_left_incomplete(tmp_path):
    assert oracle.last_complete_checkpoint(tmp_path) is None
    for step, state in ((9, "{}"), (18, "{}"), (27, '{"trunc'), (36, None)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if state is not None:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    assert oracle.last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-18")  # by step number, not name order
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint-18", "checkpoint-9"]


def test_checks_on_finished_models_only(tmp_path):
    state = {
        "untouched": {"general_loss": 3.0},
        "chance_accuracy": {"forget": 0.1, "retain": 0.1},
        "models": {
            "target": {"done": True, "final": {"forget_accuracy": 0.975, "retain_accuracy": 0.9, "general_loss": 3.05}},
            "oracle": {"epochs": {}},
        },
    }
    rows = oracle.checks(state, {"chance": 0.1, "loss": 0.1})
    assert [(row["model"], row["passed"]) for row in rows] == [("target", True), ("target", False), ("target", True)]
    state["models"]["oracle"] = {"done": True, "final": {"forget_accuracy": 0.25, "retain_accuracy": 1.0, "general_loss": 3.2}}
    rows = [row for row in oracle.checks(state, {"chance": 0.1, "loss": 0.1}) if row["model"] == "oracle"]
    assert [row["passed"] for row in rows] == [False, True, False]  # 0.25 > 0.1 + 0.1; 3.2 > 3.0 + 0.1
    assert "chance + 0.1 = 0.200" in rows[0]["check"]


def test_state_is_written_whole(tmp_path):
    path = tmp_path / "state.json"
    oracle.write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1} and [p.name for p in tmp_path.iterdir()] == ["state.json"]
