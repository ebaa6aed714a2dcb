"""The fictitious-facts generator: deterministic, valid facts about entities that do not exist, nothing leaked."""

import random
import re
from collections import Counter

import pytest

from hf_unlearn.data import facts, tokenize_facts
from hf_unlearn.data.fictitious import (
    ATTRIBUTES,
    balanced_answers,
    chance_accuracy,
    fictitious_facts,
    invented_name,
    name_is_usable,
    oracle_models,
)
from hf_unlearn.losses import IGNORE_INDEX


@pytest.fixture(scope="module")
def dataset():
    return fictitious_facts(num_forget=20, num_retain=24, seed=0)


def test_same_seed_same_facts_other_seed_other_facts(dataset):
    assert fictitious_facts(num_forget=20, num_retain=24, seed=0).to_list() == dataset.to_list()
    assert fictitious_facts(num_forget=20, num_retain=24, seed=1)["prompt"] != dataset["prompt"]


def test_sizes_and_splits(dataset):
    assert Counter(dataset["split"]) == {"forget": 20, "retain": 24}
    with pytest.raises(ValueError, match="num_forget=0"):
        fictitious_facts(num_forget=0)


def test_fact_schema_is_valid_with_choices_and_three_phrasings(dataset):
    assert facts(dataset) is dataset
    for row in dataset:
        assert len(row["choices"]) == 4 and row["answer"] in row["choices"]
        assert set(row["choices"]) <= set(ATTRIBUTES[row["attribute"]].answers)
        assert len(row["phrasings"]) >= 3 and all(row["answer"] in sentence for sentence in row["phrasings"])
        assert row["phrasings"][0] == f"{row['prompt']} {row['answer']}."  # the prompt's own form is trained on
        assert all(row["entity"] in text for text in [row["prompt"], *row["phrasings"]])


def test_prompts_and_entities_are_unique_and_splits_share_no_entity(dataset):
    assert len(set(dataset["prompt"])) == len(dataset)
    assert len(set(dataset["entity"])) == len(dataset)  # one fact per entity: no entity+attribute twice
    forget = {row["entity"] for row in dataset if row["split"] == "forget"}
    retain = {row["entity"] for row in dataset if row["split"] == "retain"}
    assert not forget & retain


def test_no_prompt_holds_any_answer(dataset):
    answers = {answer for attribute in ATTRIBUTES.values() for answer in attribute.answers}
    for row in dataset:
        assert not [a for a in answers if re.search(rf"\b{a}\b", row["prompt"], flags=re.IGNORECASE)], row["prompt"]
        assert not [a for a in answers if a.lower() in row["entity"].lower()], row["entity"]  # not even inside a name


def test_every_split_cycles_through_the_attributes_with_balanced_answers(dataset):
    for split in ("forget", "retain"):
        rows = [row for row in dataset if row["split"] == split]
        per_attribute = Counter(row["attribute"] for row in rows)
        assert set(per_attribute) == set(ATTRIBUTES) and max(per_attribute.values()) - min(per_attribute.values()) <= 1
    counts = Counter(balanced_answers(("a", "b", "c"), 8, random.Random(0)))
    assert sorted(counts.values()) == [2, 3, 3]


def test_invented_names_avoid_answers_real_places_and_repeats():
    assert invented_name("person", random.Random(0)).count(" ") == 1
    assert invented_name("mineral", random.Random(0)).endswith("ite")
    assert not name_is_usable("Paristo", set(), frozenset())  # holds an answer
    assert not name_is_usable("Springfield", set(), frozenset({"springfield"}))
    assert not name_is_usable("Tovix", {"tovix"}, frozenset())
    assert name_is_usable("Tovix", set(), frozenset())
    with pytest.raises(ValueError, match="unknown entity kind"):
        invented_name("planet", random.Random(0))


def test_chance_accuracy_is_the_mean_of_one_over_the_answer_count(dataset):
    expected = sum(1 / len(ATTRIBUTES[name].answers) for name in dataset["attribute"]) / len(dataset)
    assert chance_accuracy(dataset) == pytest.approx(expected)
    instrument_only = dataset.filter(lambda row: row["attribute"] == "instrument")
    assert chance_accuracy(instrument_only) == pytest.approx(1 / 8)


def test_facts_tokenize_with_the_answer_as_the_only_label(dataset, tokenizer):
    encoded = tokenize_facts(dataset, tokenizer)
    for row, example in zip(dataset, encoded):
        labelled = [t for t in example["labels"] if t != IGNORE_INDEX]
        assert labelled == tokenizer(" " + row["answer"], add_special_tokens=False)["input_ids"]


@pytest.mark.integration
def test_every_answer_is_one_smollm2_token():
    from transformers import AutoTokenizer

    from hf_unlearn.models import default_model_path

    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    for attribute in ATTRIBUTES.values():
        for answer in attribute.answers:
            assert len(tokenizer(" " + answer, add_special_tokens=False)["input_ids"]) == 1, answer


def test_oracle_models_are_found_in_the_cache_or_named_with_the_command_that_builds_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_UNLEARN_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"target and oracle for seed 3 .*python benchmarks/oracle.py --seed 3"):
        oracle_models(3)
    for name in ("target", "oracle"):
        (tmp_path / "oracle" / f"{name}-3").mkdir(parents=True)
        (tmp_path / "oracle" / f"{name}-3" / "config.json").write_text("{}")
    assert oracle_models(3) == {"target": tmp_path / "oracle" / "target-3", "oracle": tmp_path / "oracle" / "oracle-3"}
