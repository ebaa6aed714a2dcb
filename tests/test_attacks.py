"""AttackSuite: fresh copies, the attacker's best over all attacks, diverged attacks never counted."""

import copy
import json
import math

import pytest
import torch
from conftest import tiny_llama
from datasets import Dataset

from hf_unlearn import AttackSuite, RelearnAttackConfig, RelearnAttackTrainer
from hf_unlearn.attacks import PRESETS, RESULT_FILE
from hf_unlearn.attacks.relearn_trainer import best_of, diverged
from hf_unlearn.data import DataArguments, build_unlearning_data
from hf_unlearn.evaluation import RobustnessReport
from hf_unlearn.pipeline import robustness_report


def config(tmp_path, name, **overrides):
    settings = dict(
        output_dir=str(tmp_path / name), max_steps=6, eval_steps=2, per_device_train_batch_size=4,
        learning_rate=0.05, report_to="none", disable_tqdm=True, seed=0,
    )  # fmt: skip
    return RelearnAttackConfig(**{**settings, **overrides})


@pytest.fixture
def data(forget_dataset, retain_dataset):
    return dict(
        attack_dataset=forget_dataset.select(range(12)),
        eval_dataset={"forget": forget_dataset.select(range(12, 24)), "retain": retain_dataset},
        retain_dataset=retain_dataset,
    )


def test_run_never_modifies_the_model(model, tokenizer, data, tmp_path):
    before = copy.deepcopy(model.state_dict())
    suite = AttackSuite(
        {
            "sgd": config(tmp_path, "sgd"),
            "lora": config(tmp_path, "lora", use_peft=True, optim="adamw_torch", learning_rate=1e-2),
            "interleaved": config(tmp_path, "interleaved", interleave_retain=True),
        }
    )
    result = suite.run(model, processing_class=tokenizer, **data)
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(tensor, before[name]) for name, tensor in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters()), "not even the frozen flags change"
    # Each attack moved its own copy: the curves differ after step 0 and start at the same point.
    curves = [attack["curve"] for attack in result.attacks.values()]
    assert len({json.dumps(curve[0]) for curve in curves}) == 1
    assert len({curve[-1]["forget_loss"] for curve in curves}) == 3
    assert all(curve[-1]["forget_loss"] < curve[0]["forget_loss"] for curve in curves)


def test_best_point_names_the_recovering_attack_and_the_report_marks_the_diverged(model, tokenizer, data, tmp_path):
    suite = AttackSuite({"exploding": config(tmp_path, "exploding", learning_rate=1e4), "recovering": config(tmp_path, "recovering")})
    result = suite.run(model, processing_class=tokenizer, **data)
    exploding, recovering = result.attacks["exploding"], result.attacks["recovering"]
    assert exploding["diverged_at"] is not None and recovering["diverged_at"] is None
    assert exploding["curve"][-1]["step"] == exploding["diverged_at"] < 6, "a diverged attack stops where it broke"
    assert exploding["curve"][-1]["diverged"] is True
    best = result.best_point()
    assert best["attack"] == "recovering" and best["step"] == 6
    assert best["forget_loss"] == min(p["forget_loss"] for p in recovering["curve"])
    assert {"retain_loss", "step"} <= best.keys()

    report = RobustnessReport.from_suites("tiny", {"method": result, "no_unlearning": result})
    assert report.runs["method"]["attack_best"]["attack"] == "recovering"
    markdown = report.to_markdown()
    assert "attack best (recovering, step 6)" in markdown
    assert "| method | exploding | fine_tune | sgd lr 1e+04, no clip, 6 steps | step 0 |" in markdown
    assert f"at step {exploding['diverged_at']} |" in markdown
    paths = report.save(tmp_path / "report")
    saved = json.loads(paths["json"].read_text())  # valid JSON: NaN became null
    assert saved["runs"]["method"]["attacks"]["exploding"]["diverged_at"] == exploding["diverged_at"]
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_when_every_attack_diverges_the_report_says_so_in_words(model, tokenizer, data, tmp_path):
    exploding = AttackSuite({"exploding": config(tmp_path, "exploding", learning_rate=1e4)})
    recovering = AttackSuite({"recovering": config(tmp_path, "recovering")})
    method = exploding.run(model, processing_class=tokenizer, **data)
    baseline = recovering.run(model, processing_class=tokenizer, **data)
    assert method.all_diverged
    report = RobustnessReport.from_suites("tiny", {"method": method, "no_unlearning": baseline})
    assert report.runs["method"]["attack_best"] is None
    markdown = report.to_markdown()
    assert "| method | attack best | every attack diverged: no robustness figure |" in markdown
    assert "- method: every attack diverged" in markdown
    assert "robustness/method/attack_best/forget_loss" not in report.summary()
    # The card too: evaluate crashed writing it, after every attack had run.
    from hf_unlearn.model_card import UnlearningInfo, model_card

    card = model_card(UnlearningInfo(base_model="tiny", method="mudman", settings={}, forget={"source": "f"}, retain={"source": "r"}), report)
    assert [result.metric_name for result in card.data.eval_results] == ["forget_loss after unlearning"]
    assert "| method | " in card.text and "every attack diverged: no figure" in card.text


@pytest.mark.parametrize("first", ["sgd", "lora_interleaved"])
def test_an_unattacked_baseline_is_evaluated_once_and_never_trained(model, tokenizer, data, tmp_path, first):
    first_attack = {"sgd": {}, "lora_interleaved": dict(use_peft=True, interleave_retain=True, optim="adamw_torch", learning_rate=1e-2)}[first]
    suite = AttackSuite({"recovering": config(tmp_path, "recovering", **first_attack)})
    untouched = copy.deepcopy(model)
    report = robustness_report(
        "tiny", {"method": model, "no_unlearning": untouched}, suite, processing_class=tokenizer, attack_baseline=False, **data
    )  # fmt: skip
    method, baseline = report.runs["method"], report.runs["no_unlearning"]
    assert list(baseline["attacks"]) == ["unattacked"] and len(baseline["attacks"]["unattacked"]["curve"]) == 1
    assert baseline["attack_best"]["step"] == 0 and baseline["attack_best"]["attack"] == "unattacked"
    # The same weights: the baseline's one evaluation is the attacked run's starting point.
    assert baseline["after_unlearning"]["forget_loss"] == pytest.approx(method["after_unlearning"]["forget_loss"], rel=1e-6)
    assert method["attack_best"]["forget_loss"] < baseline["attack_best"]["forget_loss"], "the method's copy was attacked"
    assert not (tmp_path / "recovering" / "no_unlearning").exists()
    assert "over the 1 attacks" in report.to_markdown()
    assert not any("lora" in name for name, _ in untouched.named_parameters()), "the baseline was never wrapped by PEFT"


def test_divergence_rules():
    start = {"forget_loss": 2.0, "retain_loss": 3.0}
    assert not diverged({"step": 10, "forget_loss": 9.0, "retain_loss": 4.4}, start, 1.5)
    assert diverged({"step": 10, "forget_loss": 1.0, "retain_loss": 4.6}, start, 1.5), "a broken model"
    assert diverged({"step": 10, "forget_loss": math.nan, "retain_loss": 3.0}, start, 1.5)
    assert diverged({"step": 10, "forget_loss": 1.0, "facts_accuracy": math.inf}, start, 1.5)
    curve = [
        {"step": 0, "forget_loss": 5.0},
        {"step": 10, "forget_loss": math.nan},
        {"step": 20, "forget_loss": 1.0, "diverged": True},
        {"step": 30, "forget_loss": 3.0},
    ]
    assert best_of(curve, "eval_forget_loss", greater_is_better=False)["step"] == 30
    assert best_of(curve, "forget_loss", greater_is_better=True)["step"] == 0


def test_attack_suite_checks_its_input(tmp_path, model, tokenizer, data):
    with pytest.raises(ValueError, match="at least one attack"):
        AttackSuite({})
    with pytest.raises(ValueError, match="optimise different things"):
        AttackSuite({"a": config(tmp_path, "a"), "b": config(tmp_path, "b", metric_for_best_model="eval_facts_accuracy")})
    with pytest.raises(ValueError, match="unknown attack suite preset 'nope'; presets: quick, standard, paper"):
        AttackSuite.preset("nope")
    suite = AttackSuite({"interleaved": config(tmp_path, "i", interleave_retain=True)})
    with pytest.raises(ValueError, match=r"attacks \['interleaved'\] interleave retain steps: pass retain_dataset"):
        suite.run(model, processing_class=tokenizer, attack_dataset=data["attack_dataset"], eval_dataset=data["eval_dataset"])
    with pytest.raises(ValueError, match="interleave_retain=True needs a retain_dataset"):
        RelearnAttackTrainer(model, config(tmp_path, "i", interleave_retain=True), attack_dataset=data["attack_dataset"],
                             eval_dataset=data["eval_dataset"], processing_class=tokenizer)  # fmt: skip


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_valid_configs(name, tmp_path):
    suite = AttackSuite.preset(name, output_dir=str(tmp_path), metric_for_best_model="eval_facts_accuracy", per_device_train_batch_size=4)
    assert suite.attacks.keys() == PRESETS[name].keys()
    for attack, args in suite.attacks.items():
        assert isinstance(args, RelearnAttackConfig) and args.output_dir == str(tmp_path / attack)
        assert args.metric_for_best_model == "eval_facts_accuracy" and args.greater_is_better is True
        assert args.per_device_train_batch_size == 4 and (args.max_steps > 0 or args.num_train_epochs > 0)
        assert (args.lora_config() is not None) == args.use_peft
    if name == "quick":
        assert len(suite.attacks) <= 3
    if name == "standard":
        kinds = [(str(a.optim.value), a.max_grad_norm > 0, a.use_peft, a.interleave_retain, a.learning_rate) for a in suite.attacks.values()]
        assert ("sgd", False, False, False, 3e-3) in kinds, "the MUDMAN paper's unclipped SGD"
        assert len({lr for optim, clip, *_, lr in kinds if optim == "sgd" and clip}) >= 2
        assert len({lr for optim, clip, peft, inter, lr in kinds if optim == "adamw_torch" and clip and not peft and not inter}) >= 3
        assert any(peft for _, _, peft, _, _ in kinds) and any(inter for *_, inter, _ in kinds)
    assert AttackSuite.preset(name, output_dir=str(tmp_path), max_steps=3).attacks.popitem()[1].max_steps == 3


def test_resume_reads_finished_attacks_back(model, tokenizer, data, tmp_path, monkeypatch):
    suite = AttackSuite({"a": config(tmp_path, "a"), "b": config(tmp_path, "b", learning_rate=0.1)})
    first = suite.run(model, processing_class=tokenizer, **data)
    assert (tmp_path / "a" / RESULT_FILE).is_file() and (tmp_path / "b" / RESULT_FILE).is_file()

    def fail(*args, **kwargs):
        raise AssertionError("a finished attack was run again")

    with monkeypatch.context() as patch:
        patch.setattr(RelearnAttackTrainer, "train", fail)
        assert suite.run(model, processing_class=tokenizer, resume=True, **data) == first
    # Other weights: the saved results do not apply, the attacks run again.
    other = tiny_llama(len(tokenizer), seed=5)
    rerun = suite.run(other, processing_class=tokenizer, resume=True, **data)
    assert rerun.start_point != first.start_point


def test_document_level_splits_are_disjoint_by_document(tmp_path, tokenizer):
    # Each document repeats its own marker, so a chunk tells which document it came from.
    documents = [f"<{chr(65 + i % 26)}{chr(97 + i // 26)}>" * 40 for i in range(40)]
    (tmp_path / "forget.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in documents))
    (tmp_path / "retain.jsonl").write_text("".join(json.dumps({"text": d.lower() + "!"}) + "\n" for d in documents))
    args = DataArguments(forget_source=str(tmp_path / "forget.jsonl"), retain_source=str(tmp_path / "retain.jsonl"),
                         chunk_length=16, max_eval_examples=None)  # fmt: skip
    data = build_unlearning_data(args, tokenizer)

    def documents_of(split: Dataset) -> set[str]:
        texts = [tokenizer.decode(ids).replace(" ", "") for ids in split["input_ids"]]
        return {text[text.index("<") + 1 : text.index("<") + 3] for text in texts}

    parts = {name: documents_of(data[name]) for name in ("unlearn", "attack")} | {"eval": documents_of(data["eval"]["forget"])}
    assert parts["unlearn"].isdisjoint(parts["attack"]) and parts["unlearn"].isdisjoint(parts["eval"])
    assert parts["attack"].isdisjoint(parts["eval"])
    assert [len(parts[name]) for name in ("unlearn", "attack", "eval")] == [20, 10, 10]


def test_the_resume_key_sees_every_evaluator_setting(model):
    """HarnessEvaluator keyed as `HarnessEvaluator(none)` whatever its tasks or limit, and MCQ ignored `subject`:
    `hf-unlearn evaluate` rerun with other tasks read the old results back."""
    from hf_unlearn.attacks import run_fingerprint
    from hf_unlearn.evaluation.evaluators import HarnessEvaluator, MCQEvaluator

    questions = Dataset.from_list([{"question": "Q?", "choices": ["a", "b", "c", "d"], "answer": 0}])
    keys = {
        run_fingerprint(model, {"harness": evaluator})
        for evaluator in (HarnessEvaluator(["wmdp_bio"]), HarnessEvaluator(["mmlu"]), HarnessEvaluator(["wmdp_bio"], limit=10),
                          MCQEvaluator(questions), MCQEvaluator(questions, subject="biology"))  # fmt: skip
    }
    assert len(keys) == 5
    assert run_fingerprint(model, {"harness": HarnessEvaluator(["mmlu"])}) == run_fingerprint(model, {"harness": HarnessEvaluator(["mmlu"])})


def test_an_attack_that_recovered_before_it_diverged_counts_with_its_valid_point():
    """Every attack diverging at some point reported no figure, though one first recovered validly at step 10."""
    from hf_unlearn.attacks import AttackSuiteResult

    def attack(*points):
        curve = [{"step": step, "forget_loss": loss, **({"diverged": True} if diverged else {})} for step, loss, diverged in points]
        valid = [p for p in curve if not p.get("diverged")]
        return {"kind": "fine_tune", "settings": "", "curve": curve, "best": min(valid, key=lambda p: p["forget_loss"]), "diverged_at": curve[-1]["step"]}

    recovered = AttackSuiteResult("forget_loss", False, {"a": attack((0, 5.0, False), (10, 3.0, False), (20, 9.9, True)),
                                                          "b": attack((0, 5.0, False), (10, 9.9, True))})  # fmt: skip
    assert not recovered.all_diverged and recovered.best_point() == {"attack": "a", "step": 10, "forget_loss": 3.0}
    broken_at_once = AttackSuiteResult("forget_loss", False, {"a": attack((0, 5.0, False), (10, 9.9, True)),
                                                               "b": attack((0, 5.0, False), (10, float("nan"), True))})  # fmt: skip
    assert broken_at_once.all_diverged, "only the unattacked point is valid: nothing was measured"
