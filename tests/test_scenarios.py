"""One scenario argument set for every command: `--scenario facts` through unlearn, evaluate and attack, and a facts
sweep's best.yaml that reruns the facts scenario."""

import json

import pytest
import yaml
from conftest import RETAIN_TEXTS, char_tokenizer, full_batch, tiny_llama

from hf_unlearn.cli import main
from hf_unlearn.commands import unlearn as unlearn_command
from hf_unlearn.scenarios import ScenarioArguments, scenario_arguments

FACTS = [{"prompt": f"Door {name} opens with", "answer": answer} for name, answer in
         zip("ABCDEFGH", ["red", "blue", "gold", "gray", "pink", "teal", "jade", "ruby"])]  # fmt: skip


@pytest.fixture(scope="module")
def knowing_model():
    """A tiny model trained until greedy decoding answers every fact of ``FACTS``."""
    import torch
    from datasets import Dataset

    from hf_unlearn.data.facts import tokenize_facts
    from hf_unlearn.evaluation.facts import fact_accuracy
    from hf_unlearn.forward import lm_loss

    tokenizer = char_tokenizer()
    facts = Dataset.from_list(FACTS)
    batch = full_batch(tokenize_facts(facts, tokenizer), tokenizer)
    model = tiny_llama(len(tokenizer))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(400):
        optimizer.zero_grad()
        lm_loss(model, batch)[0].backward()
        optimizer.step()
        if step % 50 == 49 and fact_accuracy(model, tokenizer, facts)["accuracy"] == 1.0:
            break
    assert fact_accuracy(model, tokenizer, facts)["accuracy"] == 1.0
    return model, tokenizer


@pytest.fixture
def facts_files(tmp_path, knowing_model):
    """The model that knows ``FACTS`` in a folder, the facts in a JSONL file, retain and general text: the flags naming them."""
    model, tokenizer = knowing_model
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    (tmp_path / "facts.jsonl").write_text("".join(json.dumps(fact) + "\n" for fact in FACTS))
    for name, texts in (("retain", RETAIN_TEXTS), ("general", RETAIN_TEXTS[::-1])):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return [
        "--scenario", "facts", "--facts_source", str(tmp_path / "facts.jsonl"), "--phrasings", "0", "--retain_source",
        str(tmp_path / "retain.jsonl"), "--general_source", str(tmp_path / "general.jsonl"), "--chunk_length", "16",
    ]  # fmt: skip


def test_unlearn_and_evaluate_with_the_facts_scenario_attack_split_a_and_score_split_b(tmp_path, facts_files):
    """The command line knew one scenario (Python source): the facts protocol existed only in the sweep and benchmarks."""
    main(["unlearn", "--model_name_or_path", str(tmp_path / "model"), *facts_files, "--max_steps", "2", "--per_device_train_batch_size", "4",
          "--output_dir", str(tmp_path / "out"), "--report_to", "none"])  # fmt: skip
    recorded = json.loads((tmp_path / "out" / "unlearning_info.json").read_text())["data"]
    assert recorded["scenario"] == "facts" and recorded["facts_source"] == str(tmp_path / "facts.jsonl")

    main(["evaluate", str(tmp_path / "out"), "--attack_suite", "quick", "--attack_steps", "2", "--batch_size", "4"])
    report = json.loads((tmp_path / "out" / "robustness_report.json").read_text())
    assert report["best_metric"] == "facts_accuracy" and report["greater_is_better"] is True
    assert report["before"]["facts_accuracy"] > 0.5, "split B scored on the facts the untouched model knew"
    assert "data_differs_from_unlearning" not in report["details"], "the recorded scenario, not the default code one"
    samples = report["runs"]["no_unlearning"]["after_unlearning"]["samples"]
    split_b = {fact["prompt"] for fact in FACTS}
    assert samples and all(sample["prompt"] in split_b for sample in samples), "the text shown is split B's questions"

    main(["attack", str(tmp_path / "out"), "--attack_suite", "quick", "--max_steps", "1", "--per_device_train_batch_size", "4",
          "--output_dir", str(tmp_path / "attack")])  # fmt: skip
    attacked = json.loads((tmp_path / "attack" / "attack_suite.json").read_text())
    assert attacked["metric"] == "facts_accuracy" and attacked["data"]["scenario"] == "facts"


def test_a_record_without_a_scenario_is_the_code_scenario():
    assert scenario_arguments({"forget_source": "a.jsonl", "unknown_key": 1}) == ScenarioArguments(forget_source="a.jsonl")


def test_an_unknown_scenario_is_refused_in_one_line():
    with pytest.raises(ValueError, match="scenario='tofu' is invalid: use one of code, facts"):
        ScenarioArguments(scenario="tofu")


def test_a_facts_sweeps_best_yaml_reruns_the_facts_scenario(tmp_path, facts_files):
    """best.yaml of a facts sweep held the code scenario's data fields: `unlearn --config best.yaml` unlearned Python
    source with settings tuned on facts."""
    from hf_unlearn.cli import main as cli

    cli(["sweep", "--model_name_or_path", str(tmp_path / "model"), *facts_files, "--method", "graddiff", "--n_trials", "1",
         "--pass_budget", "4", "--eval_steps", "2", "--batch_size", "4", "--attack_steps", "1", "--attacks", "adamw_1e-4",
         "--disruption_budget", "100", "--max_eval_examples", "8", "--output_dir", str(tmp_path / "sweep")])  # fmt: skip
    best = tmp_path / "sweep" / "best.yaml"
    settings = yaml.safe_load(best.read_text())
    assert settings["scenario"] == "facts" and settings["phrasings"] == 0 and settings["facts_source"] == str(tmp_path / "facts.jsonl")
    assert "--forget_pool test" not in best.read_text(), "no held-out documents in the facts scenario"
    _, scenario, config, _ = unlearn_command.make_parser(unlearn_command.method_config_class(["--config", str(best)])).parse_args_and_config(["--config", str(best)])
    assert scenario.scenario == "facts" and config.method == "graddiff"


def test_distill_chains_after_unlearn_and_evaluate_reads_its_folder(tmp_path, facts_files):
    """`hf-unlearn unlearn ... --then_distill FILE`: UNDO (`hf-unlearn distill FOLDER`) in the same command, on the data
    the folder was unlearned on (here its retain text alone, as FILE asks); the result carries the record `evaluate` needs, with the distillation in it, and the
    card says what was done."""
    settings = dict(noise_alpha=0.3, max_steps=3, eval_steps=1, warmup_steps=1, per_device_train_batch_size=4, report_to="none", save_strategy="no",
                    distill_forget_text=False)  # fmt: skip
    (tmp_path / "distill.yaml").write_text(yaml.safe_dump(settings))
    main(["unlearn", "--model_name_or_path", str(tmp_path / "model"), *facts_files, "--max_steps", "2", "--per_device_train_batch_size", "4",
          "--output_dir", str(tmp_path / "out"), "--report_to", "none", "--then_distill", str(tmp_path / "distill.yaml")])  # fmt: skip
    student = tmp_path / "out_undo"
    info = json.loads((student / "unlearning_info.json").read_text())
    assert info["data"]["scenario"] == "facts" and info["method"] == "mudman"
    assert info["distillation"]["noise_alpha"] == 0.3 and 0 < info["distillation"]["steps"] <= 3 and info["distillation"]["distill_tokens"] > 0
    assert json.loads((student / "distillation_info.json").read_text()).items() <= info["distillation"].items()
    assert info["distillation"]["forget_text"] is False, "the command records the text it distilled on"
    assert info["distillation"]["base_model"] == str(tmp_path / "model"), "the model the teacher was unlearned from"
    assert "Then **UNDO**" in (student / "README.md").read_text() and "tokens of retain text only" in (student / "README.md").read_text()
    main(["evaluate", str(student), "--attack_suite", "quick", "--attack_steps", "1", "--batch_size", "4"])
    report = json.loads((student / "robustness_report.json").read_text())
    assert report["best_metric"] == "facts_accuracy" and report["details"]["baseline"] == str(tmp_path / "model")


@pytest.fixture
def fictitious_files(facts_files, monkeypatch):
    """``FACTS`` as a fictitious fact set: the first four the forget split, the last four the retain split."""
    from datasets import Dataset

    import hf_unlearn.scenarios

    rows = [{**fact, "split": "forget" if i < 4 else "retain"} for i, fact in enumerate(FACTS)]
    monkeypatch.setattr(hf_unlearn.scenarios, "fictitious_facts", lambda seed: Dataset.from_list(rows))
    return [*facts_files[2:], "--scenario", "fictitious"]  # the facts file is not read: the generator gives the facts


def test_the_fictitious_scenario_scores_retain_facts_it_never_trains_on(tmp_path, fictitious_files, knowing_model):
    """Unlearned from the target, the forget split is unlearned and attacked (split A), split B scored, and the retain
    facts scored beside it (``retain_facts_accuracy``), absent from every training set."""
    model, tokenizer = knowing_model
    _, arguments, _, _ = unlearn_command.make_parser(unlearn_command.method_config_class([])).parse_args_and_config(fictitious_files)
    scenario = arguments.build(tokenizer, model)
    forget, retain = [f["prompt"] for f in FACTS[:4]], [f["prompt"] for f in FACTS[4:]]
    assert scenario.name == "fictitious" and arguments.direction == "minimize" and scenario.best_metric == "eval_facts_accuracy"
    assert scenario.evaluators["retain_facts"].dataset["prompt"] == retain
    assert set(scenario.evaluators["facts"].dataset["prompt"]) < set(forget)

    def texts(dataset):  # the character tokenizer decodes "Door" as "D o o r"
        return [text.replace(" ", "") for text in tokenizer.batch_decode(list(dataset["input_ids"]))]

    def found(prompts, dataset):
        return {prompt for prompt in prompts for text in texts(dataset) if prompt.replace(" ", "") in text}

    assert found(forget, scenario.unlearn) == set(forget)
    assert not found(retain, scenario.unlearn) | found(retain, scenario.attack) | found(retain, scenario.retain)
    assert {"facts_accuracy": 1.0, "retain_facts_accuracy": 1.0} == {
        f"{name}_accuracy": evaluator(model, tokenizer)["accuracy"] for name, evaluator in scenario.evaluators.items()}


def test_the_fictitious_scenario_refuses_a_model_that_never_learned_its_facts(fictitious_files):
    from hf_unlearn.data.fictitious import oracle_folder

    _, arguments, _, _ = unlearn_command.make_parser(unlearn_command.method_config_class([])).parse_args_and_config(fictitious_files)
    tokenizer = char_tokenizer()
    with pytest.raises(ValueError, match=f"model_name_or_path: the model knows 0 of the 4 fictitious forget facts.*{oracle_folder('target', 0)}"):
        arguments.build(tokenizer, tiny_llama(len(tokenizer)))
