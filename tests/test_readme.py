"""README's command-line section, run as written: every shell command of its block, in order, each exiting 0
and writing what README says it writes.

The README's defaults are made small, not edited out: the "embedded" model is a tiny random model (placed
where the embedded SmolLM2 is materialised, ``$HF_UNLEARN_CACHE``), the data flags name local JSONL files,
step counts are appended (argparse keeps the last value), W&B is offline, the Hub is a local fake
(``fake_hub.py``, through ``HF_ENDPOINT``) and the harness tasks named are local tasks of the same names.
"""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from conftest import free_port, write_local_files
from fake_hub import FakeHub
from huggingface_hub import ModelCard

ROOT = Path(__file__).resolve().parents[1]
SECTION = "### The `hf-unlearn` command"

# A multiple-choice task in the harness's format, local, under each name README gives.
HARNESS_TASK = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files: {data}
test_split: train
output_type: multiple_choice
doc_to_text: "{{{{question.strip()}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
"""


def readme_commands() -> list[str]:
    """The shell commands of the first ``bash`` block after ``SECTION``, continuation lines joined, comments dropped."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text[text.index(SECTION) :], re.S).group(1)
    return [shlex.join(shlex.split(line, comments=True)) for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def small(command: str, data: list[str], tasks: Path, port: int) -> str:
    """``command`` with the flags that make it small here appended (its own subcommand's)."""
    words = shlex.split(command)
    subcommand = "unlearn" if "recipes/unlearn.py" in words else next((w for w in words[1:] if not w.startswith("-")), None)
    steps = ["--max_steps", "2", "--per_device_train_batch_size", "4", "--eval_steps", "1", "--save_steps", "1"]
    extra = {
        "unlearn": [*data, *steps, "--max_eval_examples", "8"],
        "attack": [*data, *steps, "--max_eval_examples", "8"],
        "evaluate": ["--attack_steps", "2", "--batch_size", "4", "--lm_eval_include_path", str(tasks), "--lm_eval_limit", "4"],
        "distill": ["--max_steps", "2", "--eval_steps", "1", "--warmup_steps", "1", "--per_device_train_batch_size", "4"],
        "sweep": [*data, "--n_trials", "2", "--pass_budget", "8", "--eval_steps", "4", "--batch_size", "4", "--attack_steps", "2",
                  "--disruption_budget", "10", "--max_eval_examples", "8"],  # fmt: skip
    }.get(subcommand, [])
    if "launch" in words:  # accelerate launch's own flag, before the script
        words.insert(words.index("launch") + 1, f"--main_process_port={port}")
    elif "--num_processes" in words:  # hf-unlearn hands it to accelerate launch
        extra += ["--main_process_port", str(port)]
    return shlex.join(words + extra)


def test_the_readme_commands_run_as_written(tmp_path):
    commands = readme_commands()
    assert len(commands) >= 10 and all(c.split()[0] in ("hf-unlearn", "accelerate", "ACCELERATE_USE_CPU=1") for c in commands), commands

    model_dir, data_args = write_local_files(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    model_dir.rename(cache / "SmolLM2-135M-Instruct")  # "embedded" is the tiny model here
    data = ["--forget_source", data_args.forget_source, "--retain_source", data_args.retain_source, "--chunk_length", "16"]
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    questions = tasks / "questions.jsonl"
    questions.write_text("".join(json.dumps({"question": f"Is {i} even?", "choices": ["yes", "no"], "answer": i % 2}) + "\n" for i in range(8)))
    for name in ("wmdp_bio", "mmlu"):
        (tasks / f"{name}.yaml").write_text(HARNESS_TASK.format(name=name, data=questions))
    work = tmp_path / "work"
    work.mkdir()
    (work / "recipes").symlink_to(ROOT / "recipes")

    with FakeHub(tmp_path / "hub") as hub:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "WANDB_"))} | {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "HF_UNLEARN_CACHE": str(cache), "OMP_NUM_THREADS": "1",
            "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb"), "WANDB_SILENT": "true",
            "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": "hf_fake", "HF_HUB_OFFLINE": "0",
        }  # fmt: skip
        unlearned, hub_files = work / "outputs" / "mudman_smollm2_code", lambda: hub.files("you/smollm2-no-python")
        for command in commands:
            run = small(command, data, tasks, free_port())
            done = subprocess.run(run, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, f"{command}\n(run as: {run})\n{done.stdout[-2000:]}\n{done.stderr[-5000:]}\nunknown Hub requests: {hub.unknown}"
            check_outputs(command, done.stdout, unlearned, hub_files, data_args.forget_source)
        assert list((tmp_path / "wandb" / "wandb").glob("offline-run-*")), "--report_to wandb wrote offline runs"
        assert {"model.safetensors", "README.md", "unlearning_info.json", "robustness_report.json"} <= hub_files()


def check_outputs(command: str, stdout: str, unlearned: Path, hub_files, forget_source: str) -> None:
    """What README says ``command`` writes (``unlearned``: the MUDMAN output folder; ``hub_files()``: the pushed repository's)."""
    work = unlearned.parents[1]
    if command.startswith(("hf-unlearn unlearn --config mudman", "hf-unlearn unlearn --num_processes", "ACCELERATE_USE_CPU")):
        assert {"model.safetensors", "unlearning_info.json", "README.md"} <= {p.name for p in unlearned.iterdir()}
        assert "hf-unlearn evaluate outputs/mudman_smollm2_code\n" in stdout + "\n", "unlearn prints the command README runs next"
        if "--then_distill" in command:  # the same weights as the first run's: its report still describes them
            student = work / "outputs" / "mudman_smollm2_code_undo"
            assert json.loads((student / "distillation_info.json").read_text())["noise_alpha"] == 0.3, "the shipped undo_smollm2 config"
            assert "The distilled model is in outputs/mudman_smollm2_code_undo" in stdout
        else:
            assert not (unlearned / "robustness_report.json").exists(), "a report of the weights this run replaced is removed"
        if "--num_processes" in command:
            assert "The unlearned model (2 processes)" in stdout and "model.safetensors" in hub_files()
    elif command.startswith("hf-unlearn distill outputs/mudman"):
        student = work / "outputs" / "mudman_smollm2_code_undo"
        assert {"model.safetensors", "distillation_info.json", "unlearning_info.json", "README.md"} <= {p.name for p in student.iterdir()}
    elif command.startswith("hf-unlearn evaluate outputs/mudman_smollm2_code_undo"):
        report = json.loads((work / "outputs" / "mudman_smollm2_code_undo" / "robustness_report.json").read_text())
        assert report["details"]["baseline"] == "embedded" and report["details"]["data"]["forget_source"] == forget_source
    elif command.startswith("hf-unlearn evaluate outputs/mudman"):
        assert {f"robustness_report.{e}" for e in ("json", "md", "png")} <= {p.name for p in unlearned.iterdir()}
        report = json.loads((unlearned / "robustness_report.json").read_text())
        assert report["details"]["baseline"] == "embedded" and report["details"]["data"]["forget_source"] == forget_source
        card = ModelCard.load(unlearned / "README.md")
        assert "| unlearned |" in card.text
        if "--lm_eval_tasks" in command:
            assert "wmdp_bio" in card.text and "mmlu" in card.text, "harness scores in the card"
            assert {"README.md", "robustness_report.json", "unlearning_info.json"} <= hub_files()
    elif "npo_lora" in command:
        lora = work / "outputs" / "npo_lora"
        assert (lora / "adapter_config.json").is_file() and ModelCard.load(lora / "README.md").data.library_name == "peft"
        if command.startswith("hf-unlearn evaluate"):
            assert (lora / "robustness_report.json").is_file()
    elif command.startswith("hf-unlearn attack"):
        assert list((work / "outputs" / "relearn_attack_smollm2_code").rglob("*.json")), "attack writes its results"
    elif command.startswith("hf-unlearn sweep"):
        assert {"summary.json", "best.yaml", "trials.png"} <= {p.name for p in (work / "outputs" / "sweep").iterdir()}
    elif "best.yaml" in command:
        assert json.loads((work / "outputs" / "mudman_tuned_code" / "unlearning_info.json").read_text())["data"]["forget_pool"] == "test"
    elif command == "hf-unlearn env":
        assert "transformers" in json.loads(stdout)["packages"]
    elif command == "hf-unlearn --version":
        assert stdout.startswith("hf-unlearn ")
    else:
        raise AssertionError(f"README has a command this test does not check: {command}")
