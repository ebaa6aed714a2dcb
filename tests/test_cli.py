"""What users see: the installed `hf-unlearn` command, --help, the model card, W&B runs, tokens."""

import importlib.util
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import write_local_files
from huggingface_hub import ModelCard

from hf_unlearn import AttackSuite, MUDMANConfig, available_methods
from hf_unlearn.commands import unlearn as unlearn_command
from hf_unlearn.model_card import UnlearningInfo, model_card
from hf_unlearn.pipeline import robustness_report, unlearn
from hf_unlearn.scenarios import code_scenario

ROOT = Path(__file__).resolve().parents[1]
importlib_find_spec = importlib.util.find_spec


@pytest.fixture
def local_files(tmp_path):
    """The tiny model folder and the data flags a user would type for its JSONL files."""
    model_dir, data = write_local_files(tmp_path)
    return model_dir, ["--forget_source", data.forget_source, "--retain_source", data.retain_source, "--chunk_length", str(data.chunk_length)]


@pytest.mark.parametrize("method", available_methods())
def test_help_works_for_every_method_and_lists_config_and_methods(method, capsys):
    with pytest.raises(SystemExit) as exit_:
        unlearn_command.make_parser(unlearn_command.method_config_class(["--method", method])).parse_args_and_config(["--method", method, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "--config YAML" in text and "Methods: " + ", ".join(available_methods()) in text.replace("\n", " ").replace("  ", " ")


def test_the_card_round_trips_with_its_metadata(tmp_path):
    info = UnlearningInfo(
        base_model="HuggingFaceTB/SmolLM2-135M-Instruct", method="npo", settings={"npo_beta": 0.2, "learning_rate": 3e-5},
        forget={"source": "wikitext", "examples": 120, "tokens": 12000, "trained_examples": 8, "trained_tokens": 800}, retain={"source": "pydoc_prose", "examples": 300, "tokens": 30000},
        disruption={"retain_loss_before": 3.3, "retain_loss_after": 3.35},
    )  # fmt: skip
    path = tmp_path / "README.md"
    model_card(info, model_id="me/smollm2-npo").save(path)
    card = ModelCard.load(path)
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert card.data.datasets == ["Salesforce/wikitext"], "Hub-backed sources only; the offline prose is not a Hub dataset"
    assert card.data.tags == ["hf_unlearn", "unlearning", "npo"] and card.data.library_name == "transformers"
    text = card.text
    assert "| `npo_beta` | `0.2` |" in text and "| forget | wikitext | 120 | 12,000 | 8 examples (8 distinct), 800 tokens |" in text
    assert "+0.0500 nats" in text and "arXiv:2404.05868" in text and "arXiv:2506.12484" not in text, "NPO's citation only"
    assert "- transformers: " in text, "framework versions"
    assert "Not measured yet" in text


def test_hub_token_is_not_written_to_training_args(tmp_path, local_files, tokenizer):
    model_dir, data = local_files
    args = MUDMANConfig(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=4, report_to="none",
                       hub_token="hf_secret_do_not_save", save_strategy="no")  # fmt: skip
    data_args = unlearn_command.make_parser(unlearn_command.method_config_class([])).parse_args_and_config(data + ["--output_dir", "x"])[1]
    trainer = unlearn(str(model_dir), args, code_scenario(data_args, tokenizer), tokenizer)
    trainer.save_model()
    saved = (tmp_path / "out" / "training_args.bin").read_bytes()
    assert b"hf_secret_do_not_save" not in saved and trainer.args.hub_token == "hf_secret_do_not_save"


def wandb_runs(folder: Path) -> list[dict]:
    """Group, job type, name, config keys and summary keys of every offline run under ``folder``.

    An offline run file is a LevelDB-style log (32 KiB blocks, 7-byte record headers) of protobuf records.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    runs = []
    for path in sorted(folder.glob("wandb/offline-run-*/run-*.wandb")):
        data, position, records, pending = path.read_bytes(), 7, [], b""
        while position + 7 <= len(data):
            if 32768 - position % 32768 < 7:
                position += 32768 - position % 32768
                continue
            _, length, kind = struct.unpack("<IHB", data[position : position + 7])
            chunk, position = data[position + 7 : position + 7 + length], position + 7 + length
            if kind == 0:
                break
            pending = chunk if kind in (1, 2) else pending + chunk
            if kind in (1, 4):
                records.append(pending)
        run = {"config": set(), "summary": set(), "media": sorted(p.name for p in path.parent.glob("files/media/**/*") if p.is_file())}
        for raw in records:
            record = pb.Record()
            record.ParseFromString(raw)
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run.update(group=record.run.run_group, job_type=record.run.job_type, name=record.run.display_name)
                run["config"] |= {item.key for item in record.run.config.update}
            elif kind == "config":  # what the Trainer adds to the run's config later
                run["config"] |= {item.key for item in record.config.update}
            elif kind == "summary":
                run["summary"] |= {item.key or "/".join(item.nested_key) for item in record.summary.update}
        runs.append(run)
    return runs


def test_wandb_runs_are_grouped_named_configured_and_hold_the_report(tmp_path, local_files, tokenizer, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    model_dir, data = local_files
    data_args = unlearn_command.make_parser(unlearn_command.method_config_class([])).parse_args_and_config(data + ["--output_dir", "x"])[1]
    scenario = code_scenario(data_args, tokenizer)
    args = MUDMANConfig(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=4, report_to="wandb",
                        save_strategy="no", run_name="pipeline-test")  # fmt: skip
    trainer = unlearn(str(model_dir), args, scenario, tokenizer, wandb_group="pipeline-test")
    suite = AttackSuite.preset("quick", output_dir=str(tmp_path / "attacks"), max_steps=2, eval_steps=1, per_device_train_batch_size=4,
                               report_to="wandb")  # fmt: skip
    robustness_report(
        "tiny", {"mudman": trainer.model, "no_unlearning": str(model_dir)}, suite, attack_dataset=scenario.attack,
        eval_dataset=scenario.eval, processing_class=tokenizer, wandb_group="pipeline-test",
    )  # fmt: skip
    runs = {run["name"]: run for run in wandb_runs(tmp_path)}
    attacks = list(suite.attacks)
    assert set(runs) == {"unlearn", "report", *(f"attack/{a}" for a in attacks), *(f"baseline/attack/{a}" for a in attacks)}
    assert {run["group"] for run in runs.values()} == {"pipeline-test"}
    assert runs["unlearn"]["job_type"] == "unlearn" and runs[f"attack/{attacks[0]}"]["job_type"] == "attack"
    assert {"method_settings", "data", "learning_rate"} <= runs["unlearn"]["config"], "method settings and data in the config"
    report = runs["report"]
    assert any(name.endswith(".table.json") for name in report["media"]) and any(name.endswith(".png") for name in report["media"])
    assert "robustness/mudman/attack_best/forget_loss" in report["summary"]
    # Interactive charts: one per metric, a line per model and attack, from the curve table.
    assert {"robustness/curve/forget_loss_table/nrows", "robustness/curve/retain_loss_table/nrows"} <= report["summary"]


def test_unlearn_command_reports_to_wandb_and_evaluates_into_the_same_run(tmp_path, local_files):
    """README's headline command with ``--report_to wandb``: the evaluation after training logged into a
    finished run and exited 1 before the card was written."""
    model_dir, data = local_files
    env = os.environ | {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "hf_unlearn.cli", "unlearn", "--model_name_or_path", str(model_dir), *data, "--max_steps", "2",
         "--per_device_train_batch_size", "4", "--output_dir", str(tmp_path / "out"), "--report_to", "wandb", "--run_name", "cli-test"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "out" / "README.md").is_file() and (tmp_path / "out" / "unlearning_info.json").is_file()
    runs = wandb_runs(tmp_path)
    assert [(run["name"], run["group"], run["job_type"]) for run in runs] == [("unlearn", "cli-test", "unlearn")], "one run, main process"
    assert {"train_loss", "eval/forget_loss"} <= runs[0]["summary"], "training and the evaluation after it in the one run"


def test_installed_command_unlearns_then_evaluates(tmp_path, local_files):
    """`pip install .` into a fresh venv (its dependencies borrowed from this one), then the console script,
    run away from the clone: the package that runs is the installed one."""
    model_dir, data = local_files
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    site = next(venv.glob("lib/python*/site-packages"))
    (site / "dependencies.pth").write_text(str(Path(torch.__file__).parents[1]) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", str(ROOT)],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import hf_unlearn; print(hf_unlearn.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)  # fmt: skip
    assert where.stdout.strip().startswith(str(site)), where.stdout + where.stderr
    shipped = subprocess.run([str(venv / "bin" / "python"), "-c", "from hf_unlearn.commands.common import config_path; print(config_path('mudman_smollm2_code'))"],
                             capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)  # fmt: skip
    assert shipped.stdout.strip().startswith(str(site)), "the shipped configs are installed with the package: " + shipped.stderr[-2000:]

    def hf_unlearn(*arguments: str) -> subprocess.CompletedProcess:
        done = subprocess.run([str(venv / "bin" / "hf-unlearn"), *arguments], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900)
        assert done.returncode == 0, done.stderr[-4000:]
        return done

    unlearned = hf_unlearn("unlearn", "--model_name_or_path", str(model_dir), *data, "--max_steps", "2", "--per_device_train_batch_size", "4",
                           "--output_dir", "unlearned", "--report_to", "none")  # fmt: skip
    assert "hf-unlearn evaluate unlearned" in unlearned.stdout, "the final message names the next command"
    assert (tmp_path / "unlearned" / "model.safetensors").is_file() and (tmp_path / "unlearned" / "unlearning_info.json").is_file()
    hf_unlearn("evaluate", "unlearned", "--baseline", str(model_dir), *data, "--attack_suite", "quick", "--attack_steps", "2",
               "--batch_size", "4")  # fmt: skip
    report = json.loads((tmp_path / "unlearned" / "robustness_report.json").read_text())
    assert report["runs"].keys() == {"unlearned", "no_unlearning"}
    card = ModelCard.load(tmp_path / "unlearned" / "README.md")
    assert card.data.tags == ["hf_unlearn", "unlearning", "mudman"] and "| unlearned |" in card.text and "| forget |" in card.text


def test_the_card_shows_the_robustness_table_with_harness_scores(tmp_path):
    from hf_unlearn.attacks import AttackSuiteResult
    from hf_unlearn.evaluation import RobustnessReport

    def result(start: float, best: float, retain: float = 3.0) -> AttackSuiteResult:
        curve = [{"step": 0, "forget_loss": start, "retain_loss": retain, "harness_wmdp_bio_acc": 0.26},
                 {"step": 10, "forget_loss": best, "retain_loss": 3.1, "harness_wmdp_bio_acc": 0.31}]  # fmt: skip
        return AttackSuiteResult("forget_loss", False, {"adamw_1e-4": {"kind": "fine_tune", "settings": "adamw", "curve": curve, "best": curve[1], "diverged_at": None}})

    report = RobustnessReport.from_suites("tiny", {"unlearned": result(9.0, 6.5, retain=3.3), "no_unlearning": result(2.8, 2.4)})
    info = UnlearningInfo(base_model="b", method="mudman", settings={}, forget={"source": "python_stdlib"}, retain={"source": "pydoc_prose"})
    model_card(info, report).save(tmp_path / "README.md")
    text = ModelCard.load(tmp_path / "README.md").text
    assert "| unlearned | 9.0000 | 6.5000 | adamw_1e-4 (fine_tune, step 10) | 3.1000 | 0.2600 / 0.3100 |" in text
    assert "wmdp_bio_acc: before / at the attacker's best" in text
    assert "3.0000 before unlearning, 3.3000 after (+0.3000 nats" in text, "disruption from the report when training logged none"


def test_evaluate_as_printed_uses_the_data_the_model_was_unlearned_on(tmp_path, local_files, capsys):
    """`hf-unlearn evaluate OUT --baseline BASE`, as `unlearn` prints it, attacked the built-in Python data while the
    card named the user's forget file; now it reads the run's data, and data flags that differ are named."""
    from hf_unlearn.cli import main

    model_dir, data = local_files
    out = str(tmp_path / "out")
    main(["unlearn", "--model_name_or_path", str(model_dir), *data, "--max_steps", "2", "--per_device_train_batch_size", "4",
          "--output_dir", out, "--report_to", "none"])  # fmt: skip
    printed = capsys.readouterr().out
    command = printed[printed.index("hf-unlearn evaluate") :].split()[1:]
    quick = ["--attack_suite", "quick", "--attack_steps", "2", "--batch_size", "4"]
    main([*command, *quick])
    report = json.loads((tmp_path / "out" / "robustness_report.json").read_text())
    assert report["details"]["data"]["forget_source"] == data[1] and "data_differs_from_unlearning" not in report["details"]

    main([*command, *quick, "--chunk_length", "12", "--output_dir", str(tmp_path / "other")])
    report = json.loads((tmp_path / "other" / "robustness_report.json").read_text())
    assert report["details"]["data"]["forget_source"] == data[1], "the run's data, the flag given on top"
    assert report["details"]["data_differs_from_unlearning"] == {"chunk_length": {"unlearning": 16, "evaluation": 12}}
    assert "chunk_length: 16 -> 12" in capsys.readouterr().err
    assert "Evaluated on other data than the model was unlearned on" in (tmp_path / "other" / "README.md").read_text()
    # A setting given back at its default value still overrides the recorded one (forget_pool's default is "all").
    main(["unlearn", "--model_name_or_path", str(model_dir), *data, "--max_steps", "1", "--per_device_train_batch_size", "4",
          "--output_dir", str(tmp_path / "tuned"), "--report_to", "none", "--forget_pool", "tuning"])  # fmt: skip
    main(["evaluate", str(tmp_path / "tuned"), "--baseline", str(model_dir), *quick, "--forget_pool=all"])
    report = json.loads((tmp_path / "tuned" / "robustness_report.json").read_text())
    assert report["details"]["data"]["forget_pool"] == "all"
    assert report["details"]["data_differs_from_unlearning"] == {"forget_pool": {"unlearning": "tuning", "evaluation": "all"}}

    # Another model unlearned into the evaluated folder: the report there measured the old weights.
    assert "| unlearned |" in (tmp_path / "out" / "README.md").read_text()
    main(["unlearn", "--model_name_or_path", str(model_dir), *data, "--max_steps", "3", "--per_device_train_batch_size", "4",
          "--output_dir", out, "--report_to", "none"])  # fmt: skip
    card = (tmp_path / "out" / "README.md").read_text()
    assert "Not measured yet" in card and "| unlearned |" not in card


def test_help_version_and_env_import_nothing_heavy():
    """`hf-unlearn --help` took 8 s: the package imported torch, transformers, TRL and wandb before reading arguments."""
    code = ("import sys\nfrom hf_unlearn.cli import main\nmain(['--version'])\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n"
            "    assert e.code == 0\nheavy = sorted(m for m in ('torch', 'transformers', 'trl', 'wandb') if m in sys.modules)\nprint('heavy', heavy)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "hf-unlearn 0.1.0" in done.stdout and "heavy []" in done.stdout and "--num_processes" in done.stdout
    env = subprocess.run([sys.executable, "-m", "hf_unlearn.cli", "env"], capture_output=True, text=True, timeout=120)
    assert json.loads(env.stdout)["packages"]["transformers"] is not None


def test_a_lora_result_is_evaluated_and_its_card_says_adapter(tmp_path, local_files):
    """`evaluate` refused the folder `unlearn --use_peft` writes ("a folder without config.json")."""
    from hf_unlearn.cli import main

    model_dir, data = local_files
    out = tmp_path / "lora"
    main(["unlearn", "--model_name_or_path", str(model_dir), *data, "--max_steps", "2", "--per_device_train_batch_size", "4",
          "--output_dir", str(out), "--report_to", "none", "--use_peft", "--lora_r", "4"])  # fmt: skip
    assert (out / "adapter_config.json").is_file() and not (out / "config.json").is_file()
    main(["evaluate", str(out), "--baseline", str(model_dir), "--attack_suite", "quick", "--attack_steps", "2", "--batch_size", "4"])
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "peft" and "AutoPeftModelForCausalLM" in card.text and "| unlearned |" in card.text


def test_evaluate_refuses_a_baseline_with_another_tokenizer(tmp_path, local_files):
    """`evaluate` scored the baseline with the unlearned model's tokenizer: another tokenizer gave a card claiming
    -99.37 % disruption, a smaller vocabulary crashed deep in torch."""
    from conftest import tiny_llama
    from transformers import PreTrainedTokenizerFast

    from hf_unlearn.commands.evaluate import main as evaluate_command

    model_dir, data = local_files
    other = tmp_path / "other_tokenizer"
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    tokenizer.add_tokens(["<extra>"])
    tiny_llama(len(tokenizer)).save_pretrained(other)
    tokenizer.save_pretrained(other)
    with pytest.raises(ValueError, match=r"another tokenizer than .*\(\d+ vs \d+ tokens\)"):
        evaluate_command([str(model_dir), "--baseline", str(other), "--output_dir", str(tmp_path / "report"), *data])


def test_the_hub_token_never_reaches_wandb_files(tmp_path, local_files):
    """W&B recorded the command line, --hub_token included, in its run files."""
    model_dir, data = local_files
    env = os.environ | {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "hf_unlearn.cli", "unlearn", "--model_name_or_path", str(model_dir), *data, "--max_steps", "1",
         "--per_device_train_batch_size", "4", "--output_dir", str(tmp_path / "out"), "--report_to", "wandb",
         "--hub_token", "hf_secret_do_not_record"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    files = [path for path in (tmp_path / "wandb").rglob("*") if path.is_file()]
    assert files and not [path for path in files if b"hf_secret_do_not_record" in path.read_bytes()]


def test_resume_flag_on_the_command_line_and_attack_resumes(tmp_path, local_files):
    """`--resume_from_checkpoint True` was taken as a folder named "True"; `hf-unlearn attack` never resumed."""
    from hf_unlearn.cli import main

    model_dir, data = local_files
    out = str(tmp_path / "out")
    common = ["--model_name_or_path", str(model_dir), *data, "--per_device_train_batch_size", "4", "--output_dir", out, "--report_to", "none",
              "--save_strategy", "steps", "--save_steps", "1"]  # fmt: skip
    main(["unlearn", *common, "--max_steps", "2"])
    main(["unlearn", *common, "--max_steps", "3", "--resume_from_checkpoint", "True"])
    assert json.loads((tmp_path / "out" / "checkpoint-3" / "trainer_state.json").read_text())["global_step"] == 3

    attack = ["attack", "--model_name_or_path", out, *data, "--attack_suite", "quick", "--max_steps", "2", "--eval_steps", "1",
              "--per_device_train_batch_size", "4", "--output_dir", str(tmp_path / "attacked")]  # fmt: skip
    main(attack)
    results = sorted((tmp_path / "attacked").rglob("attack_result.json"))
    written = [path.stat().st_mtime_ns for path in results]
    main(attack)
    assert results and [path.stat().st_mtime_ns for path in results] == written, "finished attacks read back"


def test_the_card_metadata_holds_the_robustness_results_and_only_hub_base_models(tmp_path):
    """The card's base_model was a local path (the Hub takes ids), and the robustness results were not in its model-index."""
    from hf_unlearn.attacks import AttackSuiteResult
    from hf_unlearn.evaluation import RobustnessReport

    curve = [{"step": 0, "forget_loss": 9.0, "retain_loss": 3.0}, {"step": 10, "forget_loss": 6.5, "retain_loss": 3.1}]
    result = AttackSuiteResult("forget_loss", False, {"adamw_1e-4": {"kind": "fine_tune", "settings": "adamw", "curve": curve, "best": curve[1], "diverged_at": None}})
    report = RobustnessReport.from_suites("tiny", {"unlearned": result, "no_unlearning": result})
    for base, expected in ((str(tmp_path), None), ("HuggingFaceTB/SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct")):
        info = UnlearningInfo(base_model=base, method="npo", settings={}, forget={"source": "python_stdlib"}, retain={"source": "pydoc_prose"})
        model_card(info, report, "me/model").save(tmp_path / "README.md")
        card = ModelCard.load(tmp_path / "README.md")
        assert card.data.base_model == expected
    assert [(r.metric_type, r.metric_value) for r in card.data.eval_results] == [("forget_loss", 9.0), ("forget_loss", 6.5)]
    assert card.data.eval_results[1].metric_name == "forget_loss at the attacker's best over 1 attack"
    assert "![The attack curves](robustness_report.png)" in card.text


def test_the_card_carries_the_base_models_license_and_the_wandb_run(tmp_path, local_files, tokenizer):
    """The card had no license (the unlearned weights keep the base model's) and no link to the training logs."""
    from hf_unlearn.model_card import base_model_license

    model_dir, data = local_files
    ModelCard("---\nlicense: mit\n---\n# tiny\n").save(model_dir / "README.md")
    assert base_model_license(str(model_dir)) == "mit" and base_model_license("embedded") == "apache-2.0"
    assert base_model_license(str(tmp_path / "no-card")) is None
    run = subprocess.run(
        [sys.executable, "-m", "hf_unlearn.cli", "unlearn", "--model_name_or_path", str(model_dir), *data, "--max_steps", "1",
         "--per_device_train_batch_size", "4", "--output_dir", str(tmp_path / "out"), "--report_to", "none"],
        capture_output=True, text=True, timeout=600, env=os.environ | {"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert ModelCard.load(tmp_path / "out" / "README.md").data.license == "mit"
    info = UnlearningInfo(base_model="b", method="npo", settings={}, forget={}, retain={}, wandb_url="https://wandb.ai/me/p/runs/x")
    assert "[the W&B run](https://wandb.ai/me/p/runs/x)" in model_card(info).text


def test_the_registry_is_filled_by_whatever_is_imported_first():
    """Methods register when ``hf_unlearn.methods`` is imported (the registry never imports upward): each public way to
    a method finds them all, and the bare ``UnlearnConfig`` is a valid base that no trainer runs."""
    bare = "\nconfig = UnlearnConfig(output_dir='x')\nassert config.method is None"
    for code in ("from hf_unlearn import UnlearnConfig" + bare, "from hf_unlearn.unlearn_config import UnlearnConfig" + bare,
                 "from hf_unlearn import available_methods; assert {'mudman', 'cir', 'npo'} <= set(available_methods())",
                 "from hf_unlearn import get_method; assert get_method('npo').config.__name__ == 'NPOConfig'",
                 "import hf_unlearn; assert hf_unlearn.MUDMANConfig is hf_unlearn.get_method('mudman').config"):  # fmt: skip
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{code}: {done.stderr[-2000:]}"


def test_bad_input_ends_in_its_message_not_a_traceback(tmp_path, local_files):
    model_dir, data = local_files
    command = [sys.executable, "-m", "hf_unlearn.cli", "unlearn", "--model_name_or_path", str(model_dir), "--forget_source", "no_such_source",
               "--output_dir", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "hf-unlearn unlearn: error: " in done.stderr and "python_stdlib" in done.stderr, "the message names the built-in sources"
    shown = subprocess.run(command, capture_output=True, text=True, timeout=600, env=os.environ | {"HF_UNLEARN_TRACEBACK": "1"})
    assert "Traceback" in shown.stderr


def test_push_to_hub_without_the_hub_fails_before_any_work(tmp_path, local_files):
    """It failed in transformers' Trainer with a connection traceback (rank by rank), or after an evaluation's hours."""
    model_dir, data = local_files
    env = os.environ | {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_fake", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "hf_unlearn.cli", "unlearn", "--model_name_or_path", str(model_dir), *data, "--max_steps", "1",
         "--output_dir", str(tmp_path / "out"), "--push_to_hub", "--hub_model_id", "you/x"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "--push_to_hub: the Hub at http://127.0.0.1:9 did not answer" in done.stderr and "HF_TOKEN" in done.stderr
    assert not (tmp_path / "out").exists(), "nothing was trained"


def test_mistyped_paths_commands_and_sources_are_named_at_once(tmp_path, monkeypatch, capsys):
    from hf_unlearn.cli import main
    from hf_unlearn.commands.evaluate import EvaluateArguments, run_evaluate
    from hf_unlearn.commands.evaluate import main as evaluate_command
    from hf_unlearn.data import DataArguments, sources
    from hf_unlearn.models import resolve_model_name_or_path

    (tmp_path / "outputs").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="outputs/mudman_typo.*does not exist"):  # was a Hub lookup: 51 s of retries
        resolve_model_name_or_path("outputs/mudman_typo")
    assert resolve_model_name_or_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    monkeypatch.setattr(sources, "load_dataset", lambda *a, **k: pytest.fail("a misspelled built-in source went to the Hub"))
    with pytest.raises(ValueError, match="Did you mean 'python_stdlib'"):
        sources.load_text_source("python_stdlb")
    with pytest.raises(SystemExit):
        main(["unlearnn"])
    assert "unknown command 'unlearnn'; did you mean 'unlearn'?" in capsys.readouterr().err
    with pytest.raises(ValueError, match="hf-unlearn evaluate MODEL_FOLDER"):
        evaluate_command(["--baseline", "embedded"])
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "lm_eval" else importlib_find_spec(name, *a))
    with pytest.raises(ValueError, match=r"--lm_eval_tasks needs .*hf_unlearn\[lm-eval\]"):  # before the models load, not mid-attack
        run_evaluate(EvaluateArguments(model_name_or_path="outputs/none", lm_eval_tasks=["mmlu"]), DataArguments())


def test_evaluate_baseline_defaults_to_the_recorded_model_where_this_machine_has_it(tmp_path):
    from hf_unlearn.commands.common import recorded_baseline
    from hf_unlearn.models import EMBEDDED_HUB_ID

    def info(base_model, path):
        return UnlearningInfo(base_model=base_model, method="npo", settings={}, forget={}, retain={}, base_model_path=path)

    where = tmp_path / "unlearning_info.json"
    assert recorded_baseline(None, where) == "embedded"
    assert recorded_baseline(info(EMBEDDED_HUB_ID, "embedded"), where) == "embedded"
    assert recorded_baseline(info(EMBEDDED_HUB_ID, None), where) == "embedded", "written before base_model_path existed"
    assert recorded_baseline(info(str(tmp_path), str(tmp_path)), where) == str(tmp_path)
    assert recorded_baseline(info("org/model", "org/model"), where) == "org/model"
    # Unlearned elsewhere from a folder this machine lacks: its Hub id if it has one, else ask.
    assert recorded_baseline(info("org/model", "/elsewhere/model"), where) == "org/model"
    with pytest.raises(ValueError, match="/elsewhere/model.*give --baseline"):
        recorded_baseline(info("/elsewhere/model", "/elsewhere/model"), where)
