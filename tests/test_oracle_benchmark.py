"""benchmarks/oracle.py's pieces: an epoch's data, its checkpoint, the checks on finished models, the state file."""

import importlib.util
import json
import random
from pathlib import Path

import torch
from conftest import tiny_llama

spec = importlib.util.spec_from_file_location("oracle", Path(__file__).resolve().parents[1] / "benchmarks" / "oracle.py")
oracle = importlib.util.module_from_spec(spec)
spec.loader.exec_module(oracle)


def test_every_epoch_trains_on_fresh_general_chunks_wrapping_around():
    assert oracle.general_for_epoch(10, 0, 4) == [0, 1, 2, 3]
    assert oracle.general_for_epoch(10, 1, 4) == [4, 5, 6, 7]
    assert oracle.general_for_epoch(10, 2, 4) == [8, 9, 0, 1]


def test_epoch_batches_hold_every_example_once_facts_and_general_apart_deterministically():
    facts = [[i] * 3 for i in range(10)]
    general = [[100 + i] * 8 for i in range(5)]
    batches = oracle.epoch_batches(facts, general, 4, random.Random(0))
    assert sorted(map(tuple, (ids for batch in batches for ids in batch))) == sorted(map(tuple, facts + general))
    assert all(len({len(ids) for ids in batch}) == 1 for batch in batches)  # a batch is all facts or all general text
    assert [len(batch) for batch in batches].count(4) == 3  # 10 facts: 4 + 4 + 2; 5 chunks: 4 + 1
    assert oracle.epoch_batches(facts, general, 4, random.Random(0)) == batches


def test_a_checkpoint_is_replaced_whole(tmp_path):
    model = tiny_llama(20)
    optimizer = torch.optim.AdamW(model.parameters())
    checkpoint = tmp_path / ".target-0-checkpoint"
    for epoch in (1, 2):
        oracle.save_checkpoint(model, optimizer, epoch, checkpoint)
    assert json.loads((checkpoint / "epochs_done.json").read_text()) == 2
    assert (checkpoint / "optimizer.pt").is_file() and (checkpoint / "config.json").is_file()
    assert [path.name for path in tmp_path.iterdir()] == [checkpoint.name]


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


def test_a_model_recorded_as_done_is_trained_again_when_its_weights_are_gone(tmp_path):
    folder = tmp_path / "target-0"
    assert oracle.needs_training({"epochs": {}}, folder)
    assert oracle.needs_training({"done": True}, folder)  # committed state, a new machine: no weights
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert not oracle.needs_training({"done": True}, folder)
    assert oracle.needs_training({"epochs": {"1": {}}}, folder)  # a folder from elsewhere, this run unfinished
