"""What a new user meets first: README's Python example as printed, the model folder it writes, the card's account
of what was trained on, the text the report shows, and no work done twice."""

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
from conftest import FORGET_TEXTS, RETAIN_TEXTS, char_tokenizer, tiny_llama, unlearn_config, write_local_files
from datasets import Dataset

import hf_unlearn
import hf_unlearn.data
from hf_unlearn import AttackSuite, MUDMANConfig, UnlearnTrainer
from hf_unlearn.unlearn_trainer import examples_drawn

ROOT = Path(__file__).resolve().parents[1]


def readme_python_example() -> str:
    text = (ROOT / "README.md").read_text()
    return re.search(r"```python\n(.*?)```", text[text.index("## Using it") :], re.S).group(1)


def test_the_readme_python_example_runs_as_printed(tmp_path, monkeypatch, capsys):
    """It died at its last line after 10 minutes of training (the standard suite needs the retain split). Run as
    printed, made small by parameters: the tiny model as the "embedded" one, local files as the data sources,
    2 steps of training and of every attack."""
    model_dir, local = write_local_files(tmp_path)
    build = hf_unlearn.data.build_unlearning_data
    monkeypatch.setattr(hf_unlearn, "default_model_path", lambda: str(model_dir))
    monkeypatch.setattr(
        hf_unlearn.data, "build_unlearning_data",
        lambda args, tokenizer: build(dataclasses.replace(args, forget_source=local.forget_source, retain_source=local.retain_source,
                                                          chunk_length=16, max_eval_examples=8), tokenizer),
    )  # fmt: skip
    monkeypatch.setattr(hf_unlearn, "MUDMANConfig", lambda **settings: MUDMANConfig(**{**settings, "max_steps": 2, "report_to": "none"}))
    preset = AttackSuite.preset.__func__
    monkeypatch.setattr(AttackSuite, "preset", classmethod(lambda cls, name, **common: preset(cls, name, **{**common, "max_steps": 2})))
    monkeypatch.chdir(tmp_path)

    exec(compile(readme_python_example(), "README.md", "exec"), {})

    printed = capsys.readouterr().out
    assert "'attack': " in printed and "'samples': " in printed, printed[-2000:]
    folder = tmp_path / "outputs" / "mudman"
    assert {"model.safetensors", "README.md", "unlearning_info.json"} <= {p.name for p in folder.iterdir()}, "save_model writes the card"
    assert json.loads((folder / "unlearning_info.json").read_text())["method"] == "mudman"


def test_save_model_writes_the_card_and_the_info_into_the_folder_it_saves_to(tmp_path, forget_dataset, retain_dataset, tokenizer):
    trainer = UnlearnTrainer(
        tiny_llama(len(tokenizer)), unlearn_config(tmp_path / "run", max_steps=2), forget_dataset=forget_dataset,
        retain_dataset=retain_dataset, processing_class=tokenizer,
    )  # fmt: skip
    trainer.train()
    trainer.save_model(str(tmp_path / "elsewhere"))
    assert {"README.md", "unlearning_info.json", "model.safetensors"} <= {p.name for p in (tmp_path / "elsewhere").iterdir()}


@pytest.mark.parametrize(
    ("steps", "batch", "examples", "drawn"),
    [(2, 4, 96, 8), (0, 4, 96, 0), (3, 4, 10, 10), (4, 4, 10, 10 + 4), (6, 4, 10, 20), (8, 4, 10, 28)],  # ceil(10 / 4) = 3 steps an epoch
)
def test_examples_drawn_counts_partial_batches_and_epochs(steps, batch, examples, drawn):
    assert examples_drawn(steps, batch, examples) == drawn


def test_the_card_says_what_was_trained_on_beside_the_split(tmp_path, tokenizer):
    """After 2 steps of 4 the card said 96 examples (the split); it now also says 8 were trained on, and their tokens."""
    forget = Dataset.from_dict({"text": FORGET_TEXTS * 4})
    trainer = UnlearnTrainer(
        tiny_llama(len(tokenizer)), unlearn_config(tmp_path, max_steps=2), forget_dataset=forget,
        retain_dataset=Dataset.from_dict({"text": RETAIN_TEXTS}), processing_class=tokenizer,
    )  # fmt: skip
    trainer.train()
    trainer.save_model()
    info = json.loads((tmp_path / "unlearning_info.json").read_text())["forget"]
    trained_tokens = sum(len(tokenizer(text)["input_ids"]) for text in FORGET_TEXTS[:8])  # no shuffle: the same length each
    assert info["examples"] == 96 and info["trained_examples"] == 8
    assert info["trained_tokens"] == pytest.approx(trained_tokens, rel=0.2)
    assert f"| 96 | {info['tokens']:,} | 8 examples (8 distinct), {info['trained_tokens']:,} tokens |" in (tmp_path / "README.md").read_text()


def test_unlearn_evaluates_the_final_weights_once_and_saves_no_unasked_checkpoint(tmp_path, monkeypatch):
    """`hf-unlearn unlearn` evaluated again after the last step's evaluation (2 min on SmolLM2), and a 2-step run wrote
    a 0.7 GB checkpoint beside the model."""
    from hf_unlearn.cli import main
    from hf_unlearn.unlearn_trainer import UnlearnTrainer as Trainer

    model_dir, data = write_local_files(tmp_path)
    evaluations = []
    evaluate = Trainer.evaluate

    def counted(self, eval_dataset=None, *args, **kwargs):
        if eval_dataset is None:  # the whole evaluation (it evaluates each of its datasets in turn)
            evaluations.append(self.state.global_step)
        return evaluate(self, eval_dataset, *args, **kwargs)

    monkeypatch.setattr(Trainer, "evaluate", counted)
    main(["unlearn", "--model_name_or_path", str(model_dir), "--forget_source", data.forget_source, "--retain_source", data.retain_source,
          "--chunk_length", "16", "--max_steps", "3", "--per_device_train_batch_size", "4", "--eval_strategy", "steps", "--eval_steps", "2",
          "--save_strategy", "steps", "--save_steps", "2", "--output_dir", str(tmp_path / "out"), "--report_to", "none"])  # fmt: skip
    assert evaluations == [2, 3], "each weights evaluated once: at step 2, and at the last step (3) by the training loop"
    assert sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*")) == ["checkpoint-2"], "the asked-for checkpoint only"


def test_the_report_and_the_card_show_the_text_of_each_model(tmp_path, tokenizer):
    """Held-out forget prompts answered by the untouched model, the unlearned model and the attacked one at the
    attacker's best, in the report (markdown, JSON) and the card; facts show split B's questions with their answers."""
    from hf_unlearn.evaluation import FactEvaluator
    from hf_unlearn.pipeline import robustness_report

    facts = Dataset.from_dict({"prompt": ["The vault code is", "Ann reads"], "answer": ["1234", "books"]})
    suite = AttackSuite.preset("quick", output_dir=str(tmp_path), names=["adamw_1e-4"], max_steps=4, eval_steps=2,
                               per_device_train_batch_size=4, metric_for_best_model="eval_facts_accuracy")  # fmt: skip
    forget = Dataset.from_dict({"text": FORGET_TEXTS})
    report = robustness_report(
        "t", {"unlearned": tiny_llama(len(tokenizer), seed=1), "no_unlearning": tiny_llama(len(tokenizer))}, suite,
        attack_dataset=forget, eval_dataset={"forget": forget, "retain": Dataset.from_dict({"text": RETAIN_TEXTS})},
        evaluators={"facts": FactEvaluator(facts)}, processing_class=tokenizer,
    )  # fmt: skip
    rows = report.text_samples()
    assert [row["prompt"] for row in rows] == ["The vault code is", "Ann reads"] and rows[0]["expected"] == "1234"
    assert all(isinstance(row[name], str) for row in rows for name in ("untouched", "unlearned", "unlearned attacked"))
    assert rows[0]["unlearned"] != rows[0]["untouched"], "each model's own text"
    markdown = report.to_markdown()
    assert "What the models say" in markdown and f"unlearned attacked: `{rows[0]['unlearned attacked']}`" in markdown
    best = report.runs["unlearned"]["attack_best"]
    assert best["samples"][0]["completion"] == rows[0]["unlearned attacked"], "the text of the attacker's best point"

    from hf_unlearn.model_card import UnlearningInfo, model_card

    info = UnlearningInfo(base_model="tiny", method="mudman", settings={}, forget={"source": "f"}, retain={"source": "r"})
    assert "What the models say" in model_card(info, report).text


def test_text_samples_of_a_text_scenario_show_the_true_continuation(tokenizer):
    from hf_unlearn.evaluation.samples import PROMPT_TOKENS, greedy_completions, sample_prompts

    chunks = Dataset.from_dict({"input_ids": [tokenizer(text)["input_ids"] * 2 for text in FORGET_TEXTS[:3]]})
    prompts = sample_prompts(chunks, None, tokenizer, 2)
    assert len(prompts) == 2 and len(prompts[0]["input_ids"]) == PROMPT_TOKENS
    assert (prompts[0]["prompt"] + prompts[0]["expected"]).replace(" ", "") in (FORGET_TEXTS[0] * 2).replace(" ", "")
    samples = greedy_completions(tiny_llama(len(tokenizer)), tokenizer, prompts)
    assert [set(sample) for sample in samples] == [{"prompt", "completion", "expected"}] * 2 and samples[0]["completion"]


def test_text_samples_of_prompts_of_different_lengths_are_each_prompts_own_greedy_completion(tokenizer):
    """One batch, left-padded: each completion is what the prompt alone gives (padding masked, positions shifted)."""
    from hf_unlearn.evaluation.samples import NEW_TOKENS, greedy_completions

    model = tiny_llama(len(tokenizer))
    prompts = [{"input_ids": tokenizer(text)["input_ids"][:length], "prompt": text, "expected": None} for text, length in zip(FORGET_TEXTS, (3, 11, 6))]
    alone = []
    for prompt in prompts:
        ids = torch.tensor([prompt["input_ids"]])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        alone.append(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
    assert [sample["completion"] for sample in greedy_completions(model, tokenizer, prompts)] == alone and len(set(alone)) == 3


# --- bad input: one line, whatever the launcher ---------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--learning_rate", "-1e-5"], "learning_rate=-1e-05 is invalid: rates must be finite numbers >= 0"),  # after a space
        (["--learning_rate=-1e-5"], "learning_rate=-1e-05 is invalid"),  # torch's "Invalid learning rate", unnamed
        (["--method", "npo", "--learning_rate", "0"], "learning_rate=0 is invalid: the optimizer applies npo's update"),
        (["--method", "rmu", "--npo_beta", "0.2"], "--npo_beta is not a setting of method 'rmu' (it belongs to npo)"),
        (["--max_step", "2"], "--max_step is not a setting of method 'mudman' (did you mean --max_steps?)"),  # was read as max_steps
        (["--then_distill", "undo.yml"], "--then_distill undo.yml: no such file, and no shipped config"),  # found only after unlearning
        (["--meta_learning", "false", "--adv_lr", "0.1"], "adv_lr=0.1 is not used by method 'mudman' (meta_learning is off)"),  # the method's check
    ],
)
def test_bad_settings_are_named_in_one_line(flags, message, tmp_path, capsys):
    from hf_unlearn.cli import main

    with pytest.raises(SystemExit) as exit_:  # a missing model: were the setting accepted, the run would stop there, at once
        main(["unlearn", *flags, "--model_name_or_path", str(tmp_path / "no_model"), "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and message in err and len(err.strip().splitlines()) == 2, err  # the line, and the traceback hint


@pytest.mark.parametrize(
    ("command", "flags", "message"),
    [
        ("evaluate", ["--attack_steps", "-1"], "attack_steps=-1 is invalid: give steps >= 1, or leave it unset for the preset's steps"),
        ("evaluate", ["--attack_steps", "0"], "attack_steps=0 is invalid"),  # named max_steps and suggested -1
        ("sweep", ["--attack_steps", "-1"], "attack_steps=-1 is invalid"),
        ("evaluate", ["--attack_suite", "strong"], "attack_suite='strong' is invalid: use one of quick, standard, paper"),
        ("attack", ["--attack_suite", "strong"], "attack_suite='strong' is invalid: use one of quick, standard, paper, none"),
        ("attack", ["--attack_suite", "none", "--kind", "quantize", "--quantize_group_size", "0"], "quantize_group_size=0 is invalid"),
        ("attack", ["--attack_suite", "none", "--kind", "prompt", "--prompt_templates", "shout"],
         "prompt_templates=['shout'] is invalid: choose among reasoning"),
        ("evaluate", ["--lm_eval_tasks", "wmdp_bioo"], "--lm_eval_tasks: wmdp_bioo is not a task of lm-evaluation-harness (did you mean wmdp_bio?)"),
        ("unlearn", ["--forget_source", "pydoc_prose", "--retain_source", "pydoc_prose"], "retain_source='pydoc_prose' is the forget source"),
    ],
)
def test_bad_settings_of_every_command_are_refused_before_any_model_loads(command, flags, message, tmp_path, capsys):
    """Silent (every attack trained 3 epochs), late (after models and data loaded) or a traceback inside the first attack."""
    from hf_unlearn.cli import main

    with pytest.raises(SystemExit) as exit_:  # a missing model: a setting checked after loading it would end there instead
        main([command, "--model_name_or_path", str(tmp_path / "no_model"), *flags, "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and message in err and len(err.strip().splitlines()) == 2, err


def test_a_config_file_that_sets_a_key_twice_is_refused(tmp_path, capsys):
    """The last value won, without a word."""
    from hf_unlearn.cli import main

    config = tmp_path / "run.yaml"
    config.write_text("method: mudman\nmax_steps: 30\nunlearning_rate: 0.01\nmax_steps: 3\n")
    with pytest.raises(SystemExit):
        main(["unlearn", "--config", str(config), "--model_name_or_path", str(tmp_path / "no_model"), "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert f"--config {config} sets max_steps twice (lines 2 and 4): keep one" in err and len(err.strip().splitlines()) == 2, err


def test_a_group_size_that_divides_no_layer_is_refused_before_any_attack(tmp_path, capsys):
    """Refused by the quantization itself, after the suite's first evaluations."""
    from hf_unlearn.cli import main

    model_dir, data = write_local_files(tmp_path)
    with pytest.raises(SystemExit):
        main(["attack", str(model_dir), "--forget_source", data.forget_source, "--retain_source", data.retain_source, "--chunk_length", "16",
              "--attack_suite", "none", "--kind", "quantize", "--quantize_group_size", "7", "--output_dir", str(tmp_path / "a")])  # fmt: skip
    err = capsys.readouterr().err
    assert "quantize_group_size=7 does not divide the input width of the model's linear layers (32, 64): give a divisor of 32" in err, err
    assert not (tmp_path / "a").exists(), "nothing evaluated"


def test_evaluate_refuses_weights_replaced_after_unlearning(tmp_path, capsys):
    """The card said "after unlearning with mudman" beside the new weights' figures: unlearning_info.json kept no digest."""
    from hf_unlearn.cli import main
    from hf_unlearn.model_card import saved_weights_digest

    model_dir, data = write_local_files(tmp_path)
    out = tmp_path / "out"
    main(["unlearn", "--model_name_or_path", str(model_dir), "--forget_source", data.forget_source, "--retain_source", data.retain_source,
          "--chunk_length", "16", "--max_steps", "1", "--per_device_train_batch_size", "4", "--output_dir", str(out), "--report_to", "none"])  # fmt: skip
    assert json.loads((out / "unlearning_info.json").read_text())["weights_sha256"] == saved_weights_digest(out)
    tiny_llama(len(char_tokenizer()), seed=9).save_pretrained(out)  # other weights, same folder
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["evaluate", str(out), "--attack_suite", "quick", "--attack_steps", "1", "--batch_size", "4"])
    err = capsys.readouterr().err
    assert f"{out}: its weights are not the ones its unlearning_info.json describes" in err and len(err.strip().splitlines()) == 2, err
    assert not (out / "robustness_report.json").exists()


def test_a_refusal_under_several_processes_is_one_line_from_the_main_process(tmp_path):
    """It was printed by every rank and followed by ~40 lines of torch elastic's traceback."""
    import os
    import subprocess
    import sys

    from conftest import free_port

    model_dir, _ = write_local_files(tmp_path)
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "hf_unlearn.cli", "unlearn", "--num_processes", "2", "--main_process_port", str(free_port()),
         "--model_name_or_path", str(model_dir), "--forget_source", str(tmp_path / "missing.jsonl"), "--output_dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert len(errors) == 1 and errors[0].startswith("hf-unlearn unlearn: error: ") and "missing.jsonl" in errors[0], done.stderr[-3000:]


def test_attack_on_an_unlearned_folder_uses_its_recorded_data(tmp_path, capsys):
    """`hf-unlearn attack FOLDER` attacked the built-in Python source without a word; it now takes the data the folder
    was unlearned on, as `evaluate` does, and names a data flag that differs."""
    from hf_unlearn.cli import main

    model_dir, data = write_local_files(tmp_path)
    main(["unlearn", "--model_name_or_path", str(model_dir), "--forget_source", data.forget_source, "--retain_source", data.retain_source,
          "--chunk_length", "16", "--max_steps", "1", "--per_device_train_batch_size", "4", "--output_dir", str(tmp_path / "out"),
          "--report_to", "none"])  # fmt: skip
    attack = ["--attack_suite", "quick", "--max_steps", "1", "--per_device_train_batch_size", "4"]
    main(["attack", str(tmp_path / "out"), *attack, "--output_dir", str(tmp_path / "a")])
    assert json.loads((tmp_path / "a" / "attack_suite.json").read_text())["data"]["forget_source"] == data.forget_source
    assert "warning" not in capsys.readouterr().err
    main(["attack", str(tmp_path / "out"), *attack, "--chunk_length", "12", "--output_dir", str(tmp_path / "b")])
    used = json.loads((tmp_path / "b" / "attack_suite.json").read_text())["data"]
    assert used["forget_source"] == data.forget_source and used["chunk_length"] == 12
    err = capsys.readouterr().err
    assert "hf-unlearn attack on other data than" in err and "chunk_length: 16 -> 12" in err, err


# --- the first run -------------------------------------------------------------------------------------


def test_make_quickstart_writes_the_report_with_text_and_the_card(tmp_path):
    """`make quickstart` (README's first command): unlearn, the quick suite, the report with the models' text, the card.
    Run as the Makefile has it, on the tiny model as the embedded one, with its scale made smaller by appended flags."""
    import os
    import shlex
    import subprocess
    import sys

    makefile = (ROOT / "Makefile").read_text()
    flags = re.search(r"^QUICKSTART = (.*)$", makefile, re.M).group(1)
    assert re.search(r"^quickstart: install\n\t\$\(PYTHON\) recipes/demo.py \$\(QUICKSTART\) \$\(ARGS\)$", makefile, re.M)
    model_dir, _ = write_local_files(tmp_path)
    (tmp_path / "cache").mkdir()
    model_dir.rename(tmp_path / "cache" / "SmolLM2-135M-Instruct")
    small = ["--unlearn_steps", "2", "--attack_steps", "2", "--eval_every", "1", "--max_forget_documents", "4", "--chunk_length", "16",
             "--max_eval_examples", "2", "--output_dir", str(tmp_path / "outputs")]  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "demo.py"), *shlex.split(flags), *small], capture_output=True, text=True, timeout=900,
        env=os.environ | {"HF_UNLEARN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "What the models say" in (tmp_path / "outputs" / "code" / "robustness_report.md").read_text()
    card = (tmp_path / "outputs" / "code" / "unlearn" / "README.md").read_text()
    assert "What the models say" in card and "| mudman |" in card


def test_an_attacks_best_point_after_its_start_carries_its_text(tmp_path, tokenizer):
    """The text is recorded at every evaluation that is the attack's best so far, so the attacker's best point has
    the attacked model's own text, not the start's."""
    forget = Dataset.from_dict({"text": FORGET_TEXTS})
    suite = AttackSuite.preset("quick", output_dir=str(tmp_path), names=["adamw_1e-4"], max_steps=4, eval_steps=2,
                               per_device_train_batch_size=8, learning_rate=1e-2)  # fmt: skip
    result = suite.run(tiny_llama(len(tokenizer)), attack_dataset=forget, eval_dataset={"forget": forget}, processing_class=tokenizer)
    best, start = result.best_point(), result.start_point
    assert best["step"] > 0 and best["forget_loss"] < start["forget_loss"], "the attack relearned"
    assert [s["prompt"] for s in best["samples"]] == [s["prompt"] for s in start["samples"]]
    assert best["samples"] != start["samples"], "the attacked model's own completions"
