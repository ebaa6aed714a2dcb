"""Scoring against hand-computed cases, evaluators inside the trainers, and the robustness report."""

import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace

import evaluate
import pytest
import torch
from conftest import char_tokenizer, tiny_llama
from datasets import Dataset
from torch import nn
from transformers import TrainerCallback

from hf_unlearn import AttackSuite, RelearnAttackConfig, RelearnAttackTrainer
from hf_unlearn.evaluation import (
    FactEvaluator,
    HarnessEvaluator,
    MCQEvaluator,
    RobustnessReport,
    fact_metrics,
    mcq_accuracy,
    mcq_metrics,
)
from hf_unlearn.evaluation.facts import answer_token_scores
from hf_unlearn.evaluation.mcq import letter_token_ids, mcq_prompt
from hf_unlearn.evaluation.metrics import metric_path

QUESTIONS = Dataset.from_list(
    [
        {"question": "Xylem carries?", "choices": ["water", "light", "sound", "heat"], "answer": 0},
        {"question": "Yeast is a?", "choices": ["plant", "fungus", "virus", "rock"], "answer": 1},
        {"question": "Zinc symbol?", "choices": ["Z", "Zc", "Zn", "Zi"], "answer": 2},
    ]
)
# Letter logits the fake model emits after each prompt, keyed by the prompt's first character.
LETTER_LOGITS = {"X": [2.0, 0.0, 0.0, 0.0], "Y": [0.0, 0.0, 1.0, 0.0], "Z": [0.0, 0.0, 3.0, 3.0]}


class LetterLM(nn.Module):
    """Emits LETTER_LOGITS at the last real token of each prompt, zeros elsewhere."""

    def __init__(self, tokenizer):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.letters = letter_token_ids(tokenizer, 4)
        self.by_first_token = {tokenizer(k)["input_ids"][0]: v for k, v in LETTER_LOGITS.items()}
        self.vocab = len(tokenizer)

    def forward(self, input_ids, attention_mask, use_cache=False):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        last = attention_mask.sum(dim=1) - 1
        for row in range(input_ids.shape[0]):
            logits[row, last[row], self.letters] = torch.tensor(self.by_first_token[int(input_ids[row, 0])])
        return SimpleNamespace(logits=logits)


def softmax(values):
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def test_mcq_prompt_format():
    assert mcq_prompt(" Q? ", ["a", "b"]) == "Q?\nA. a\nB. b\nAnswer:"


def test_mcq_scores_by_hand():
    tokenizer = char_tokenizer()
    expected_probs = [softmax(LETTER_LOGITS[k])[answer] for k, answer in (("X", 0), ("Y", 1), ("Z", 2))]
    # argmax: X -> A (right), Y -> C (wrong), Z -> C and D tie, argmax takes the first: C (right)
    metrics = mcq_accuracy(LetterLM(tokenizer), tokenizer, QUESTIONS, batch_size=2)  # 2 + 1: padding exercised
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["correct_prob"] == pytest.approx(sum(expected_probs) / 3)
    assert mcq_metrics(torch.tensor([LETTER_LOGITS["X"]]), torch.tensor([3]))["accuracy"] == 0.0


def test_letters_must_be_single_tokens():
    tokenizer = char_tokenizer()
    with pytest.raises(ValueError, match="splits ' E' into 2 tokens"):
        letter_token_ids(tokenizer, 5)


def test_fact_scores_by_hand():
    # Two sequences, vocab 3; the answer is positions 2..3 (labels -100 before), row 1 padded at the end.
    logits = torch.full((2, 4, 3), 0.0)
    logits[0, 1] = torch.tensor([0.0, 2.0, 0.0])  # predicts token 1: matches answer token 1
    logits[0, 2] = torch.tensor([1.0, 0.0, 0.0])  # predicts token 0: answer is 2 -> greedy miss
    logits[1, 1] = torch.tensor([0.0, 0.0, 5.0])  # answer token 2, hit; row 1's answer has one token
    labels = torch.tensor([[-100, -100, 1, 2], [-100, -100, 2, -100]])
    scores = answer_token_scores(logits, labels)
    p_row0 = (softmax([0.0, 2.0, 0.0])[1] + softmax([1.0, 0.0, 0.0])[2]) / 2
    assert scores[0] == (False, pytest.approx(p_row0))
    assert scores[1] == (True, pytest.approx(softmax([0.0, 0.0, 5.0])[2]))
    assert fact_metrics(scores) == {"accuracy": 0.5, "answer_prob": pytest.approx((p_row0 + scores[1][1]) / 2)}


def test_evaluate_modules_load_from_local_path():
    mcq = evaluate.load(metric_path("mcq_accuracy"))
    logits = [LETTER_LOGITS[k] for k in "XYZ"]
    # By hand, as in test_mcq_scores_by_hand: X -> A right, Y -> C wrong, Z -> C (first of a tie) right.
    expected_prob = (softmax(LETTER_LOGITS["X"])[0] + softmax(LETTER_LOGITS["Y"])[1] + softmax(LETTER_LOGITS["Z"])[2]) / 3
    assert mcq.compute(predictions=logits, references=[0, 1, 2]) == pytest.approx({"accuracy": 2 / 3, "correct_prob": expected_prob})
    facts = evaluate.load(metric_path("fact_accuracy"))
    result = facts.compute(predictions=[[5, 6], [7]], references=[[5, 6], [8]], answer_probs=[[0.5, 0.7], [0.1]])
    assert result == pytest.approx({"accuracy": 0.5, "answer_prob": (0.6 + 0.1) / 2})


# --- evaluators in the trainers, and the report -------------------------------------------------

FACTS = Dataset.from_list([{"prompt": f"Code of vault {i} is", "answer": f"{(i * 37) % 100:02d}"} for i in range(8)])


def fact_texts(rows):
    return Dataset.from_dict({"text": [f"{r['prompt']} {r['answer']}" for r in rows]})


class LogCatcher(TrainerCallback):
    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs))


def attack(model, tokenizer, tmp_path, name, **overrides):
    args = RelearnAttackConfig(
        output_dir=str(tmp_path / name), max_steps=4, eval_steps=2, per_device_train_batch_size=4,
        learning_rate=0.1, save_strategy="no", report_to="none", disable_tqdm=True, seed=0, **overrides,
    )  # fmt: skip
    catcher = LogCatcher()
    trainer = RelearnAttackTrainer(
        model, args, attack_dataset=fact_texts(FACTS), eval_dataset={"forget": fact_texts(FACTS)},
        processing_class=tokenizer, evaluators={"facts": FactEvaluator(FACTS), "quiz": MCQEvaluator(QUESTIONS)},
        callbacks=[catcher],
    )  # fmt: skip
    trainer.train()
    return trainer, catcher


def test_evaluators_feed_curve_best_point_and_loggers(tmp_path):
    tokenizer = char_tokenizer()
    trainer, catcher = attack(
        tiny_llama(len(tokenizer)), tokenizer, tmp_path, "facts",
        metric_for_best_model="eval_facts_answer_prob", greater_is_better=True,
    )  # fmt: skip
    curve = trainer.attack_curve()
    assert [p["step"] for p in curve] == [0, 2, 4]
    for key in ("forget_loss", "facts_accuracy", "facts_answer_prob", "quiz_accuracy", "quiz_correct_prob"):
        assert all(key in p for p in curve), key
    assert trainer.best_point() == max(curve, key=lambda p: p["facts_answer_prob"])
    assert any("eval_quiz_accuracy" in logs for logs in catcher.logs), "evaluator metrics reach report_to callbacks"


def suite_result(model, tokenizer, tmp_path, name, **overrides):
    args = RelearnAttackConfig(
        output_dir=str(tmp_path / name), max_steps=4, eval_steps=2, per_device_train_batch_size=4,
        learning_rate=0.1, report_to="none", disable_tqdm=True, seed=0, **overrides,
    )  # fmt: skip
    suite = AttackSuite({"sgd": args, "sgd_fast": dataclasses.replace(args, learning_rate=0.3, output_dir=str(tmp_path / f"{name}_fast"))})
    return suite.run(
        model, attack_dataset=fact_texts(FACTS), eval_dataset={"forget": fact_texts(FACTS)}, processing_class=tokenizer,
        evaluators={"facts": FactEvaluator(FACTS)},
    )  # fmt: skip


def test_robustness_report(tmp_path, monkeypatch):
    tokenizer = char_tokenizer()
    results = {
        "method": suite_result(tiny_llama(len(tokenizer), seed=1), tokenizer, tmp_path, "method"),
        "no_unlearning": suite_result(tiny_llama(len(tokenizer), seed=2), tokenizer, tmp_path, "none"),
    }
    report = RobustnessReport.from_suites("Tiny facts", results, details={"method": "test"})
    assert report.best_metric == "forget_loss" and report.greater_is_better is False
    assert report.before == results["no_unlearning"].start_point != results["method"].start_point
    assert report.runs["method"]["attack_best"] == results["method"].best_point()
    assert report.runs["method"]["after_unlearning"] == results["method"].attacks["sgd"]["curve"][0]
    assert report.metrics()[:2] == ["forget_loss", "facts_accuracy"]

    from matplotlib.figure import Figure

    drawn, savefig = [], Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda figure, *a, **k: (drawn.append(figure), savefig(figure, *a, **k))[1])
    paths = report.save(tmp_path / "report")
    # One axis per metric with every model on it, so the unlearned model is read against the untouched one.
    (figure,) = drawn
    assert [axis.get_title() for axis in figure.axes] == report.curve_metrics() == ["forget_loss"]
    assert all([t.get_text().split()[0] for t in axis.get_legend().get_texts()] == ["method", "no_unlearning"] for axis in figure.axes)
    assert all(path.stat().st_size > 0 for path in paths.values())
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = paths["markdown"].read_text()
    best = results["method"].best_point()
    assert f"| method | attack best ({best['attack']}, step {best['step']}) | {best['forget_loss']:.4f} |" in markdown
    assert "| method | sgd_fast | fine_tune | sgd lr 3e-01, no clip, 4 steps |" in markdown
    assert RobustnessReport.load(paths["json"]) == report

    trainer = RelearnAttackTrainer(
        tiny_llama(len(tokenizer)), RelearnAttackConfig(output_dir=str(tmp_path / "log"), report_to="none"),
        attack_dataset=fact_texts(FACTS), eval_dataset={"forget": fact_texts(FACTS)}, processing_class=tokenizer,
    )  # fmt: skip
    catcher = LogCatcher()
    trainer.add_callback(catcher)
    report.log(trainer)
    summary = report.summary()
    assert catcher.logs[-1].items() >= summary.items()
    assert summary["robustness/method/attack_best/forget_loss"] == best["forget_loss"]


def test_report_requires_baseline_and_one_metric(tmp_path):
    tokenizer = char_tokenizer()
    result = suite_result(tiny_llama(len(tokenizer)), tokenizer, tmp_path, "a")
    with pytest.raises(ValueError, match="baseline run 'no_unlearning' is not among"):
        RobustnessReport.from_suites("x", {"method": result})
    other = suite_result(tiny_llama(len(tokenizer)), tokenizer, tmp_path, "b", metric_for_best_model="eval_facts_accuracy")
    with pytest.raises(ValueError, match="optimise different metrics"):
        RobustnessReport.from_suites("x", {"method": other, "no_unlearning": result})


# --- as lm-evaluation-harness scores --------------------------------------------------------------


def test_the_wmdp_prompt_is_the_harness_template():
    """Our prompt is what lm_eval/tasks/wmdp renders: description + doc_to_text of the installed harness."""
    import jinja2
    import lm_eval
    import yaml

    from hf_unlearn.data.recipes import WMDP_PROMPT_SUBJECTS

    tasks = Path(lm_eval.__file__).parent / "tasks" / "wmdp"
    template = yaml.safe_load((tasks / "_default_template_yaml").read_text())
    doc = {"question": "  Which virus is enveloped? ", "choices": ["Polio", "Influenza", "Hepatitis A", "Norovirus"], "answer": 1}
    for subset, subject in WMDP_PROMPT_SUBJECTS.items():
        description = yaml.safe_load((tasks / f"wmdp_{subset}.yaml").read_text())["description"]
        harness = description + jinja2.Template(template["doc_to_text"]).render(**doc)
        assert mcq_prompt(doc["question"], doc["choices"], subject) == harness
    assert template["doc_to_choice"] == ["A", "B", "C", "D"], "scored on the letters, as mcq_letter_logits does"


def test_harness_tasks_run_as_an_evaluator_on_local_files(tmp_path, monkeypatch, capfd):
    """A harness task defined over a local file, run by HarnessEvaluator on the model in hand, agrees with our
    own MCQ scoring of the same questions (same prompt, same letters); run outside a git clone, it prints no
    `git describe` failure."""
    monkeypatch.chdir(tmp_path)
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(row) + "\n" for row in QUESTIONS.to_list()))
    (tmp_path / "tiny_quiz.yaml").write_text(
        "task: tiny_quiz\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: " + str(questions) + "\n"
        "test_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{question.strip()}}\\nA. {{choices[0]}}\\nB. {{choices[1]}}\\nC. {{choices[2]}}\\nD. {{choices[3]}}\\nAnswer:"\n'
        'doc_to_choice: ["A", "B", "C", "D"]\ndoc_to_target: answer\nmetric_list:\n  - metric: acc\n'
    )
    import lm_eval.tasks

    from hf_unlearn.evaluation.evaluators import check_harness_tasks

    built = []  # the harness's task index takes 14 s to build: once per process, not at every evaluation point

    class CountedTaskManager(lm_eval.tasks.TaskManager):
        def __init__(self, **kwargs):
            built.append(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(lm_eval.tasks, "TaskManager", CountedTaskManager)
    tokenizer = char_tokenizer()
    model = tiny_llama(len(tokenizer), seed=4)
    check_harness_tasks(["tiny_quiz"], str(tmp_path))
    metrics = HarnessEvaluator(["tiny_quiz"], include_path=str(tmp_path), batch_size=2)(model, tokenizer)
    assert set(metrics) == {"tiny_quiz_acc"}
    assert metrics["tiny_quiz_acc"] == pytest.approx(mcq_accuracy(model, tokenizer, QUESTIONS)["accuracy"])
    assert "not a git repository" not in capfd.readouterr().err
    assert HarnessEvaluator(["tiny_quiz"], include_path=str(tmp_path), batch_size=2)(model, tokenizer) == metrics
    assert built == [{"include_path": str(tmp_path)}]
