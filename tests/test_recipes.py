"""The recipes (thin wrappers over hf_unlearn.cli): YAML configs parse, unlearn -> attack runs end to end."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_local_files
from trl import ModelConfig

import hf_unlearn
from hf_unlearn import MUDMANConfig, RelearnAttackConfig
from hf_unlearn.attacks import PRESETS
from hf_unlearn.commands import unlearn as unlearn_command
from hf_unlearn.commands.attack import AttackArguments, run_attack
from hf_unlearn.commands.common import ModelArguments, parser_for
from hf_unlearn.commands.unlearn import run_unlearn
from hf_unlearn.evaluation import RobustnessReport
from hf_unlearn.scenarios import ScenarioArguments

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_yaml_configs_parse():
    config_path = "mudman_smollm2_code"  # a shipped config, by name
    argv = ["--config", config_path, "--max_steps", "7"]
    model_args, data_args, config, _ = unlearn_command.make_parser(unlearn_command.method_config_class(argv)).parse_args_and_config(argv)
    assert model_args.model_name_or_path is None  # the embedded model
    assert data_args.forget_source == "python_stdlib" and data_args.chunk_length == 64
    assert config.method == "mudman" and config.target_modules == ["gate_proj"] and config.save_total_limit == 2
    assert config.max_steps == 7, "command-line flags override the YAML"
    parser = parser_for((ModelArguments, ScenarioArguments, RelearnAttackConfig, AttackArguments), "attack", "attack")
    config_path = str(Path(hf_unlearn.__file__).parent / "configs" / "relearn_attack_smollm2_code.yaml")  # or by path
    _, attack_data_args, attack_config, attack_args = parser.parse_args_and_config(["--config", config_path])
    assert attack_data_args == data_args, "the attack must rebuild the unlearning run's splits"
    assert attack_args.attack_suite == "standard" and attack_config.per_device_train_batch_size == 4


def test_method_picks_its_config_class(tmp_path):
    def parse(argv):
        return unlearn_command.make_parser(unlearn_command.method_config_class(argv)).parse_args_and_config(argv)

    _, _, config, _ = parse(["--method", "npo", "--npo_beta", "0.3", "--output_dir", str(tmp_path)])
    assert type(config).__name__ == "NPOConfig" and config.npo_beta == 0.3
    yaml_path = tmp_path / "rmu.yaml"
    yaml_path.write_text("method: rmu\nrmu_layer: 3\n")
    _, _, config, _ = parse(["--config", str(yaml_path), "--output_dir", str(tmp_path)])
    assert type(config).__name__ == "RMUConfig" and config.rmu_layer == 3
    with pytest.raises(ValueError, match="available methods"):
        parse(["--method=nope"])
    yaml_path.write_text("method: rmu\nunlearning_loss: neg_entropy\n")  # another method's setting, in a YAML
    with pytest.raises(ValueError, match="unlearning_loss"):
        parse(["--config", str(yaml_path), "--output_dir", str(tmp_path)])


@pytest.mark.parametrize("recipe", ["unlearn.py", "relearn_attack.py", "sweep.py"])
def test_recipes_are_thin_wrappers_that_run(recipe):
    done = subprocess.run([sys.executable, str(RECIPES / recipe), "--help"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "--config YAML" in done.stdout, done.stderr[-2000:]


def test_unlearn_then_attack(tmp_path):
    model_dir, data = write_local_files(tmp_path)
    data_args = ScenarioArguments(**dataclasses.asdict(data))
    common = dict(per_device_train_batch_size=4, max_steps=3, report_to="none", disable_tqdm=True)
    unlearned_dir = tmp_path / "unlearned"
    trainer = run_unlearn(
        ModelConfig(model_name_or_path=str(model_dir)), data_args, MUDMANConfig(output_dir=str(unlearned_dir), save_strategy="no", **common)
    )
    assert (unlearned_dir / "model.safetensors").is_file() and trainer.state.global_step == 3
    result = run_attack(
        ModelArguments(str(unlearned_dir)), data_args, RelearnAttackConfig(output_dir=str(tmp_path / "attack"), eval_steps=1, **common),
        AttackArguments(attack_suite="quick", baseline_model=str(model_dir)),
    )
    saved = json.loads((tmp_path / "attack" / "attack_suite.json").read_text())
    assert saved["attacks"].keys() == PRESETS["quick"].keys()
    for attack in saved["attacks"].values():
        steps = [0, 1, 2, 3] if attack["kind"] == "fine_tune" else [0, 0]  # quantize_int4: one evaluation, no steps
        assert [p["step"] for p in attack["curve"]] == steps, "the command line's max_steps applies to every fine-tuning attack"
    # The attacks start from the saved unlearned model, on the held-out split the unlearning run evaluated.
    unlearned_eval = trainer.evaluate()
    for attack in saved["attacks"].values():
        assert attack["curve"][0]["forget_loss"] == pytest.approx(unlearned_eval["eval_forget_loss"], abs=1e-5)
    assert saved["best"] == result["best"] and saved["best"]["attack"] in PRESETS["quick"]
    assert saved["best"]["forget_loss"] < unlearned_eval["eval_forget_loss"], "an attack recovered something"
    report = RobustnessReport.load(tmp_path / "attack" / "robustness_report.json")
    assert report.runs.keys() == {"attacked", "no_unlearning"} and report.runs["attacked"]["attack_best"] == saved["best"]


def test_shipped_configs_are_package_data_found_by_name(tmp_path):
    """The configs `--help` names were not in the wheel: a pip user had no recipes/configs."""
    from hf_unlearn.commands.common import config_path

    assert Path(config_path("mudman_smollm2_code")).is_file() and Path(config_path("relearn_attack_smollm2_code.yaml")).is_file()
    with pytest.raises(FileNotFoundError, match=r"no shipped config of that name \(shipped: mudman_smollm2_code, relearn_attack"):
        config_path("nope")
    setup = (Path(__file__).resolve().parents[1] / "setup.cfg").read_text()
    assert "hf_unlearn = configs/*.yaml" in setup, "installed with the package"


def test_config_equals_form_is_read():
    """`--config=FILE` was accepted by argparse and silently ignored (TrlParser reads `--config FILE` only)."""
    argv = ["--config=mudman_smollm2_code", "--output_dir", "x"]
    _, data_args, config, _ = unlearn_command.make_parser(unlearn_command.method_config_class(argv)).parse_args_and_config(argv)
    assert config.target_modules == ["gate_proj"] and data_args.chunk_length == 64
