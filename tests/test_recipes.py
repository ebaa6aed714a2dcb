"""The recipes: YAML configs parse into the dataclasses, and unlearn -> attack runs end to end."""

import json
from pathlib import Path

import pytest
from conftest import FORGET_TEXTS, RETAIN_TEXTS, char_tokenizer, tiny_llama
from trl import TrlParser

from hf_unlearn import MUDMANConfig, RelearnAttackConfig
from hf_unlearn.attacks import PRESETS
from hf_unlearn.data import DataArguments
from hf_unlearn.evaluation import RobustnessReport

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.fixture
def recipes(monkeypatch):
    monkeypatch.syspath_prepend(str(RECIPES))
    import relearn_attack
    import unlearn

    return unlearn, relearn_attack


def test_yaml_configs_parse(recipes, tmp_path):
    unlearn, _ = recipes
    parser = TrlParser((unlearn.ModelArguments, DataArguments, MUDMANConfig))
    config_path = str(RECIPES / "configs" / "mudman_smollm2_python.yaml")
    model_args, data_args, config = parser.parse_args_and_config(["--config", config_path, "--max_steps", "7"])
    assert model_args.model_name_or_path is None  # the embedded model
    assert data_args.forget_source == "python_stdlib" and data_args.chunk_length == 100
    assert config.method == "mudman" and config.target_modules == ["gate_proj"]
    assert config.max_steps == 7, "command-line flags override the YAML"
    parser = TrlParser((unlearn.ModelArguments, DataArguments, RelearnAttackConfig))
    config_path = str(RECIPES / "configs" / "relearn_attack_smollm2_python.yaml")
    _, attack_data_args, attack_config = parser.parse_args_and_config(["--config", config_path])
    assert attack_data_args == data_args, "the attack must rebuild the unlearning run's splits"
    assert attack_config.learning_rate == 3e-3 and attack_config.max_steps == 150


def test_method_picks_its_config_class(recipes, tmp_path):
    unlearn, _ = recipes
    _, _, config = unlearn.parse_args(["--method", "npo", "--npo_beta", "0.3", "--output_dir", str(tmp_path)])
    assert type(config).__name__ == "NPOConfig" and config.npo_beta == 0.3
    yaml_path = tmp_path / "rmu.yaml"
    yaml_path.write_text("method: rmu\nrmu_layer: 3\n")
    _, _, config = unlearn.parse_args(["--config", str(yaml_path), "--output_dir", str(tmp_path)])
    assert type(config).__name__ == "RMUConfig" and config.rmu_layer == 3
    with pytest.raises(ValueError, match="available methods"):
        unlearn.parse_args(["--method=nope"])


def test_unlearn_then_attack(recipes, tmp_path):
    unlearn, relearn_attack = recipes
    model_dir = tmp_path / "tiny"
    tiny_llama(len(char_tokenizer())).save_pretrained(model_dir)
    char_tokenizer().save_pretrained(model_dir)
    for name, texts in (("forget", FORGET_TEXTS * 4), ("retain", RETAIN_TEXTS)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    data_args = DataArguments(
        forget_source=str(tmp_path / "forget.jsonl"), retain_source=str(tmp_path / "retain.jsonl"), chunk_length=16
    )
    common = dict(per_device_train_batch_size=4, max_steps=3, report_to="none", disable_tqdm=True)
    unlearned_dir = tmp_path / "unlearned"
    trainer = unlearn.main(
        unlearn.ModelArguments(str(model_dir)), data_args,
        MUDMANConfig(output_dir=str(unlearned_dir), save_strategy="no", **common),
    )  # fmt: skip
    assert (unlearned_dir / "model.safetensors").is_file() and trainer.state.global_step == 3
    result = relearn_attack.main(
        unlearn.ModelArguments(str(unlearned_dir)), data_args,
        RelearnAttackConfig(output_dir=str(tmp_path / "attack"), eval_steps=1, **common),
        relearn_attack.AttackArguments(attack_suite="quick", baseline_model=str(model_dir)),
    )  # fmt: skip
    saved = json.loads((tmp_path / "attack" / "attack_suite.json").read_text())
    assert saved["attacks"].keys() == PRESETS["quick"].keys()
    for attack in saved["attacks"].values():
        assert [p["step"] for p in attack["curve"]] == [0, 1, 2, 3], "the command line's max_steps applies to every attack"
    # The attacks start from the saved unlearned model, on the held-out split the unlearning run evaluated.
    unlearned_eval = trainer.evaluate()
    for attack in saved["attacks"].values():
        assert attack["curve"][0]["forget_loss"] == pytest.approx(unlearned_eval["eval_forget_loss"], abs=1e-5)
    assert saved["best"] == result["best"] and saved["best"]["attack"] in PRESETS["quick"]
    assert saved["best"]["forget_loss"] < unlearned_eval["eval_forget_loss"], "an attack recovered something"
    report = RobustnessReport.load(tmp_path / "attack" / "robustness_report.json")
    assert report.runs.keys() == {"attacked", "no_unlearning"} and report.runs["attacked"]["attack_best"] == saved["best"]
