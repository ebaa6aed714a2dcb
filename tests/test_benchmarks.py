"""TOFU and MUSE evaluators on a tiny model, and `hf-unlearn evaluate --benchmark tofu|muse` end to end, offline."""

import json

import numpy as np
import pytest
from conftest import char_tokenizer, hub_folder, tiny_llama, write_local_files
from datasets import Dataset

from hf_unlearn.data.recipes import tofu
from hf_unlearn.data.schema import DatasetSchemaError
from hf_unlearn.evaluation import benchmarks as metrics
from hf_unlearn.evaluation.muse import MUSEEvaluator
from hf_unlearn.evaluation.tofu import TOFUEvaluator


def qa_rows(n: int, paraphrased: bool, start: int = 0) -> list[dict]:
    return [
        {"question": f"Where does author {i} live?", "answer": f"In town {i}.", **({"paraphrased_answer": f"Town {i}."} if paraphrased else {}),
         "perturbed_answer": [f"In city {i + 1}.", f"At sea {i}.", "Nowhere."]}
        for i in range(start, start + n)
    ]  # fmt: skip


@pytest.fixture
def tofu_folder(tmp_path):
    configs = {"forget10_perturbed": qa_rows(4, True), "retain_perturbed": qa_rows(5, True, 10), "real_authors_perturbed": qa_rows(3, False, 20),
               "world_facts_perturbed": qa_rows(3, False, 30)}  # fmt: skip
    return hub_folder(tmp_path / "TOFU", {name: {"train": Dataset.from_list(rows)} for name, rows in configs.items()})


@pytest.fixture
def muse_folder(tmp_path):
    texts = Dataset.from_list([{"text": f"Report {i}: the council met on day {i} and voted {i % 3} times."} for i in range(6)])
    qa = Dataset.from_list([{"question": f"When did council {i} meet?", "answer": f"On day {i}"} for i in range(3)])
    configs = {"verbmem": {"forget": Dataset.from_list([{"prompt": f"Report {i}: the", "gt": f"council met on day {i}"} for i in range(3)])},
               "knowmem": dict.fromkeys(("forget_qa", "retain_qa", "forget_qa_icl", "retain_qa_icl"), qa),
               "privleak": {"forget": texts.select(range(3)), "holdout": texts.select(range(3, 6)), "retain": texts}}  # fmt: skip
    return hub_folder(tmp_path / "MUSE-News", configs)


def test_tofu_evaluator_values_and_forget_quality(tofu_folder, model, tokenizer):
    """Each value is the metric of the model's own losses; forget quality against the model itself is 1."""
    evaluator = TOFUEvaluator.from_hub("forget10", tofu_folder, max_new_tokens=12, batch_size=3)
    reference = evaluator.reference_results(model, tokenizer)
    results = TOFUEvaluator.from_hub("forget10", tofu_folder, reference=reference, max_new_tokens=12)(model, tokenizer)
    forget = tofu("forget10_perturbed", path=tofu_folder)
    encoded = [metrics.encode_answer(tokenizer, f"Question: {q}\nAnswer:", a, chat=False, eos=True) for q, a in zip(forget["question"], forget["answer"])]
    losses = metrics.example_losses(model, tokenizer, encoded, batch_size=1)
    assert results["forget_probability"] == pytest.approx(metrics.probability(losses), abs=1e-6)
    assert results["forget_quality"] == 1.0 and len(reference["forget_truth_ratios"]) == 4
    nine = [results[f"{s}_{v}"] for s in ("retain", "real_authors", "world_facts") for v in ("probability", "rouge", "truth_ratio")]
    assert results["model_utility"] == pytest.approx(metrics.model_utility(nine)) and all(0 <= v <= 1 for v in results.values())
    with pytest.raises(ValueError, match="holds 2 forget truth ratios, the forget set has 4 questions"):
        TOFUEvaluator.from_hub("forget10", tofu_folder, reference={"forget_truth_ratios": [1.0, 0.5]})
    with pytest.raises(ValueError, match="holds no 'forget_truth_ratios'"):
        TOFUEvaluator.from_hub("forget10", tofu_folder, reference={"privleak_auc": 0.5})
    # OpenUnlearning's TOFU_EVAL.json of the retain model is read as well.
    theirs = {"forget_truth_ratio": {"agg_value": 0.6, "value_by_index": {str(i): {"score": r} for i, r in enumerate(reference["forget_truth_ratios"])}}}
    assert TOFUEvaluator.from_hub("forget10", tofu_folder, reference=theirs).reference_ratios == reference["forget_truth_ratios"]


def test_tofu_evaluator_refuses_ragged_perturbed_answers(tofu_folder):
    ragged = Dataset.from_list([{**row, "perturbed_answer": row["perturbed_answer"][: 1 + i % 2]} for i, row in enumerate(qa_rows(4, True))])
    sets = [tofu(name, path=tofu_folder) for name in ("retain_perturbed", "real_authors_perturbed", "world_facts_perturbed")]
    with pytest.raises(DatasetSchemaError, match="perturbed_answer.*lists of different lengths"):
        TOFUEvaluator(ragged, *sets)


def test_muse_evaluator_privleak_against_the_retain_model(muse_folder, model, tokenizer):
    other = tiny_llama(len(tokenizer), seed=1)
    reference = MUSEEvaluator.from_hub("news", muse_folder).reference_results(other, tokenizer)
    results = MUSEEvaluator.from_hub("news", muse_folder, reference=reference, verbmem_new_tokens=10, knowmem_new_tokens=6)(model, tokenizer)
    assert set(results) == {"verbmem_forget", "knowmem_forget", "knowmem_retain", "privleak_auc", "privleak"}
    assert results["privleak"] == pytest.approx(metrics.privleak(results["privleak_auc"], reference["privleak_auc"]))
    assert results["privleak_auc"] != reference["privleak_auc"], "two models, two AUCs"
    assert MUSEEvaluator.from_hub("news", muse_folder, reference={"mia_min_k": {"agg_value": 0.52}}).reference_auc == 0.52


def test_evaluate_command_with_the_tofu_and_muse_benchmarks(tmp_path, tofu_folder, muse_folder):
    """`hf-unlearn evaluate MODEL --benchmark tofu --retain_model ORACLE`: TOFU's metrics before and after unlearning
    and at the attacker's best in the report and the card; the retain model's truth ratios cached in the output folder."""
    from hf_unlearn.cli import main

    model_dir, data = write_local_files(tmp_path)
    oracle = tmp_path / "oracle"
    tiny_llama(len(char_tokenizer()), seed=3).save_pretrained(oracle)
    char_tokenizer().save_pretrained(oracle)
    flags = ["--forget_source", data.forget_source, "--retain_source", data.retain_source, "--chunk_length", "16",
             "--attack_suite", "quick", "--attack_steps", "1", "--batch_size", "4", "--baseline", str(model_dir)]  # fmt: skip
    out = tmp_path / "out"
    main(["evaluate", str(oracle), *flags, "--output_dir", str(out), "--benchmark", "tofu", "--benchmark_path", tofu_folder,
          "--retain_model", str(oracle)])  # fmt: skip
    report = json.loads((out / "robustness_report.json").read_text())
    unlearned = report["runs"]["unlearned"]
    assert unlearned["after_unlearning"]["tofu_forget_quality"] == 1.0, "the retain model scored against itself"
    assert report["before"]["tofu_forget_quality"] < 1.0 and 0 <= unlearned["attack_best"]["tofu_model_utility"] <= 1
    cached = json.loads((out / "tofu_reference.json").read_text())
    assert len(cached["forget_truth_ratios"]) == 4 and cached["settings"]["retain_model"] == str(oracle)
    card = (out / "README.md").read_text()
    assert "tofu_forget_quality: before / at the attacker's best" in card and "type: tofu_model_utility" in card

    main(["evaluate", str(oracle), *flags, "--output_dir", str(tmp_path / "muse"), "--benchmark", "muse", "--benchmark_path", muse_folder,
          "--retain_logs", str(_write(tmp_path / "muse_eval.json", {"mia_min_k": {"agg_value": 0.5}}))])  # fmt: skip
    before = json.loads((tmp_path / "muse" / "robustness_report.json").read_text())["before"]
    assert np.isfinite(before["muse_privleak"]) and "muse_knowmem_retain" in before
    from hf_unlearn.commands.evaluate import main as evaluate_command

    with pytest.raises(ValueError, match="add --benchmark tofu or --benchmark muse"):
        evaluate_command([str(oracle), *flags, "--output_dir", str(tmp_path / "x"), "--retain_model", str(oracle)])


def _write(path, content):
    path.write_text(json.dumps(content))
    return path


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"benchmark": "tofuu"}, "benchmark='tofuu' is invalid: use one of tofu, muse"),
        ({"retain_logs": "eval.json"}, "--retain_model and --retain_logs serve a benchmark"),
        ({"benchmark": "tofu", "retain_model": "oracle", "retain_logs": "eval.json"}, "give --retain_model or --retain_logs, not both"),
    ],
)
def test_evaluate_refuses_benchmark_settings_it_cannot_honour(settings, message):
    from hf_unlearn.commands.evaluate import EvaluateArguments

    with pytest.raises(ValueError, match=message):
        EvaluateArguments(model_name_or_path="model", **settings)
