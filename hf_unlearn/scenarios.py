"""The offline robustness scenarios the commands, the demo, the benchmarks and the sweep share.

``ScenarioArguments`` is the one argument set of a scenario (``--scenario code | facts`` and its data fields), with
one ``build()``: ``hf-unlearn unlearn``, ``attack`` and ``evaluate`` take it, and ``unlearning_info.json`` records it,
so ``evaluate`` attacks a model with the scenario it was unlearned in.

- ``code_scenario``: the MUDMAN paper's Python experiment. Forget Python source of the standard
  library, keep English prose; documents split unlearn / attack / eval before chunking. The
  attacker's best point is the lowest held-out forget loss.
- ``fictitious_scenario``: the facts protocol on facts about entities that do not exist, unlearned from the *target*
  (the embedded model fine-tuned on all of them, ``benchmarks/oracle.py``), with the *oracle* (fine-tuned on all but
  the forget facts) as what perfect unlearning reaches. Beside split-B accuracy it scores the retain facts, which
  no step of unlearning trains on: a second, sharper disruption measure.
- ``facts_scenario``: Deeb & Roger's protocol on the facts the model knows (world capitals by
  default): unlearn all of them, attack on split A, measure split B, never attacked. The
  attacker's best point is the highest split-B accuracy. Facts are trained on as prompt + answer
  (the loss on the answer only) or, with ``phrasings``, as fact-stating sentences (CIR's authors:
  several phrasings per fact, every token counts), for the method and the attacks alike.

``eval["retain"]`` is what disruption is measured on, declared once, by each scenario's ``general_source``
default: held-out chunks of a text *no method trains on* (a retain loss measured on the retain set's own
distribution flatters methods whose retain step trains on it). The facts scenario uses Python source
(``python_stdlib``); the code scenario forgets Python, so its default is ``None``: held-out retain
documents (prose), which it splits from the retain text before any training sees them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from datasets import Dataset
from torch import nn
from transformers import PreTrainedTokenizerBase

from .data import DataArguments, build_unlearning_data, chunk_tokens, load_text_source, split_dataset
from .data.facts import fact_sentences, facts_protocol_splits, tokenize_facts, us_state_capitals, world_capitals
from .data.facts import facts as load_facts
from .data.fictitious import fictitious_facts, in_tofu_schema, oracle_folder
from .evaluation.evaluators import Evaluator, FactEvaluator
from .evaluation.facts import known_facts
from .evaluation.tofu import TOFUEvaluator


@dataclass
class Scenario:
    """Everything an unlearn -> attack -> report run needs, built deterministically from its arguments."""

    name: str
    unlearn: Dataset  # what the method unlearns
    attack: Dataset  # what the relearning attacks fine-tune on
    retain: Dataset  # what the method may train on to preserve behaviour
    eval: dict[str, Dataset]  # {"forget": held out, "retain": disruption text}
    best_metric: str  # what the attacker optimises (metric_for_best_model)
    sources: dict[str, str]  # {"forget": ..., "retain": ...}: where the data comes from, for model cards
    evaluators: dict[str, Evaluator] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def _general_text(source: str, tokenizer: PreTrainedTokenizerBase, chunk_length: int, limit: int, seed: int) -> Dataset:
    """Held-out chunks of ``source``: the eval quarter of its documents, so none overlaps a training split."""
    documents = split_dataset(load_text_source(source), ("train", "eval"), (0.75, 0.25), seed)["eval"]
    chunks = chunk_tokens(documents, tokenizer, chunk_length=chunk_length).shuffle(seed=seed)
    return chunks.select(range(min(limit, len(chunks))))


def code_scenario(data_args: DataArguments, tokenizer: PreTrainedTokenizerBase, general_source: str | None = None) -> Scenario:
    """Forget ``data_args.forget_source`` (Python source by default), keep ``data_args.retain_source``."""
    data = build_unlearning_data(data_args, tokenizer)
    eval_sets = dict(data["eval"])
    if general_source is not None:
        eval_sets["retain"] = _general_text(
            general_source, tokenizer, data_args.chunk_length, data_args.max_eval_examples or 64, data_args.split_seed
        )
    details = {"forget_source": data_args.forget_source, "retain_source": data_args.retain_source, "general_source": general_source,
               **{f"{name}_examples": len(data[name]) for name in ("unlearn", "attack", "retain")}, "data_arguments": asdict(data_args)}  # fmt: skip
    sources = {"forget": data_args.forget_source, "retain": data_args.retain_source}
    return Scenario("code", data["unlearn"], data["attack"], data["retain"], eval_sets, "eval_forget_loss", sources, details=details)


def facts_scenario(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    facts: Dataset | None = None,
    *,
    retain_source: str = "pydoc_prose",
    general_source: str | None = "python_stdlib",
    chunk_length: int = 100,
    max_eval_examples: int = 32,
    phrasings: int | None = None,
    seed: int = 42,
) -> Scenario:
    """The facts protocol on the ``facts`` (default: capitals of the 120 most populous countries) that
    ``model`` knows; retain text ``retain_source``, disruption on ``general_source`` (None: held-out ``retain_source``).
    ``phrasings``: train on up to this many fact-stating sentences per fact instead of prompt + answer."""
    candidates = world_capitals(120) if facts is None else facts
    known = known_facts(model, tokenizer, candidates)
    parts = facts_protocol_splits(known, seed=seed)
    documents = split_dataset(load_text_source(retain_source), ("train", "eval"), (0.75, 0.25), seed)
    retain = chunk_tokens(documents["train"], tokenizer, chunk_length=chunk_length)
    if general_source is None:
        disruption = chunk_tokens(documents["eval"], tokenizer, chunk_length=chunk_length).shuffle(seed=seed)
        disruption = disruption.select(range(min(max_eval_examples, len(disruption))))
    else:
        disruption = _general_text(general_source, tokenizer, chunk_length, max_eval_examples, seed)
    details = {"known_facts": len(known), "of": len(candidates), "split_a": len(parts["attack"]), "split_b": len(parts["eval"]),
               "retain_source": retain_source, "general_source": general_source, "phrasings": phrasings}  # fmt: skip

    def training_examples(part: Dataset) -> Dataset:
        return fact_sentences(part, phrasings) if phrasings else tokenize_facts(part, tokenizer)

    return Scenario(
        name="facts",
        unlearn=training_examples(parts["unlearn"]),  # all known facts
        attack=training_examples(parts["attack"]),  # split A
        retain=retain,
        eval={"forget": tokenize_facts(parts["eval"], tokenizer), "retain": disruption},
        best_metric="eval_facts_accuracy",
        sources={"forget": f"facts ({len(known)} the model knew, of {len(candidates)})", "retain": retain_source},
        evaluators={"facts": FactEvaluator(parts["eval"])},  # split B, never attacked
        details=details,
    )


# The fictitious scenario refuses a model that knows fewer of its forget facts: not the target it unlearns from.
TARGET_KNOWS = 0.9


def fictitious_scenario(model: nn.Module, tokenizer: PreTrainedTokenizerBase, fictitious_seed: int = 0, **facts_settings: Any) -> Scenario:
    """``facts_scenario`` on the forget split of ``fictitious_facts(seed=fictitious_seed)``, from ``model``, the target
    fine-tuned on them; ``retain_facts_accuracy`` scores the retain split at every evaluation. ``facts_settings``: the
    text and split settings of ``facts_scenario``."""
    facts = fictitious_facts(seed=fictitious_seed)
    forget, retain = (facts.filter(lambda row, split=split: row["split"] == split) for split in ("forget", "retain"))
    known = len(known_facts(model, tokenizer, forget))  # before splitting: a model that knows none could not be split
    if known < TARGET_KNOWS * len(forget):
        raise ValueError(
            f"model_name_or_path: the model knows {known} of the {len(forget)} fictitious forget facts, so it is not the "
            f"target the fictitious scenario unlearns from: give --model_name_or_path {oracle_folder('target', fictitious_seed)} "
            f"(build it with `python benchmarks/oracle.py --seed {fictitious_seed}`)"
        )
    scenario = facts_scenario(model, tokenizer, forget, **facts_settings)
    scenario.name = "fictitious"
    scenario.evaluators["retain_facts"] = FactEvaluator(retain)  # never unlearned, attacked or trained on as retain data
    scenario.sources["forget"] = f"fictitious facts ({known} the model knew, of {len(forget)})"
    scenario.details.update(retain_facts=len(retain), fictitious_seed=fictitious_seed)
    return scenario


# Greedy tokens ROUGE reads after a fictitious fact's prompt: its answer is one word (TOFU's answers take 200).
FICTITIOUS_NEW_TOKENS = 8


def fictitious_tofu_evaluator(model: nn.Module, tokenizer: PreTrainedTokenizerBase, fictitious_seed: int = 0, **settings: Any) -> TOFUEvaluator:
    """TOFU's metrics on the fictitious facts: their forget and retain splits as TOFU's forget and retain sets, and in
    the slots of TOFU's real authors and world facts the US state and world capitals ``model`` (the target) knows. Each
    question is the fact's prompt, its wrong answers the other choices; answers are scored without an EOS, as the
    target learned them. ``settings``: other ``TOFUEvaluator`` fields (``reference``, ``batch_size``)."""
    facts = fictitious_facts(seed=fictitious_seed)
    forget, retain = (in_tofu_schema(facts.filter(lambda row, split=split: row["split"] == split)) for split in ("forget", "retain"))
    real_authors, world_facts = (in_tofu_schema(known_facts(model, tokenizer, source), paraphrased=False)
                                 for source in (us_state_capitals(), world_capitals(120)))  # fmt: skip
    return TOFUEvaluator(forget, retain, real_authors, world_facts, template="{question}", answer_eos=False,
                         max_new_tokens=FICTITIOUS_NEW_TOKENS, **settings)  # fmt: skip


SCENARIOS = ("code", "facts", "fictitious")
# Built-in fact sets of the facts scenario (``facts_source``); any other value is a JSON/JSONL file of facts.
FACT_SETS = {"world_capitals": None, "us_state_capitals": us_state_capitals}


@dataclass
class ScenarioChoice:
    """Which scenario, and its settings beyond the text data: declared once, for ``ScenarioArguments`` (every command)
    and the sweep's arguments."""

    scenario: str = field(default="code", metadata={"help": f"The scenario: {', '.join(SCENARIOS)}."})
    facts_source: str = field(
        default="world_capitals",
        metadata={"help": f"facts: {', '.join(FACT_SETS)}, or a JSON/JSONL file of facts (prompt, answer, optional phrasings)."},
    )
    max_countries: int = field(default=120, metadata={"help": "facts, world_capitals: capitals of this many most populous countries."})
    phrasings: int = field(default=3, metadata={"help": "facts: train on this many fact-stating sentences per fact (0: prompt + answer)."})
    general_source: str | None = field(
        default=None,
        metadata={"help": "Disruption text: held-out chunks of this source, which no method trains on; default: the scenario's "
                  "(code: held-out retain documents; facts and fictitious: python_stdlib)."},  # fmt: skip
    )
    fictitious_seed: int = field(
        default=0, metadata={"help": "fictitious: the seed of the generated facts, as the target was built (benchmarks/oracle.py --seed)."}
    )

    def check_scenario(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario={self.scenario!r} is invalid: use one of {', '.join(SCENARIOS)}")
        if self.phrasings < 0:
            raise ValueError(f"phrasings={self.phrasings!r} is invalid: use 0 (prompt + answer) or a number of sentences")

    @property
    def knows_facts(self) -> bool:
        """A facts scenario: the model before unlearning decides which facts are unlearned."""
        return self.scenario in ("facts", "fictitious")

    @property
    def direction(self) -> str:
        """The defender's direction on the scenario's metric: forget loss up (code), fact accuracy down."""
        return "maximize" if self.scenario == "code" else "minimize"


@dataclass
class ScenarioArguments(ScenarioChoice, DataArguments):
    """A scenario and its data: ``code`` (forget ``forget_source`` text, keep ``retain_source``; the attacker's best is
    the lowest held-out forget loss) or ``facts`` (Deeb & Roger: unlearn every fact of ``facts_source`` the untouched
    model knows, attack on split A, score split B by greedy accuracy; the text fields give its retain text)."""

    def __post_init__(self):
        super().__post_init__()
        self.check_scenario()

    @classmethod
    def of(cls, choice: ScenarioChoice, data_args: DataArguments) -> ScenarioArguments:
        """The scenario ``choice`` names, on ``data_args``'s data."""
        return cls(**asdict(data_args), **{f.name: getattr(choice, f.name) for f in fields(ScenarioChoice)})

    def fact_set(self) -> Dataset:
        if self.facts_source == "world_capitals":
            return world_capitals(self.max_countries)
        if self.facts_source in FACT_SETS:
            return FACT_SETS[self.facts_source]()
        return load_facts(self.facts_source)

    def build(self, tokenizer: PreTrainedTokenizerBase, untouched: nn.Module | None = None) -> Scenario:
        """The scenario's data. ``untouched``: the model before unlearning, which decides the facts it knows (facts)."""
        if self.scenario == "code":
            return code_scenario(self, tokenizer, general_source=self.general_source)
        if untouched is None:
            raise ValueError(f"the {self.scenario} scenario needs the model before unlearning, which decides the facts it knows")
        settings = dict(retain_source=self.retain_source, general_source=self.general_source or "python_stdlib", chunk_length=self.chunk_length,
                        max_eval_examples=self.max_eval_examples or 32, phrasings=self.phrasings or None, seed=self.split_seed)  # fmt: skip
        if self.scenario == "fictitious":
            scenario = fictitious_scenario(untouched, tokenizer, self.fictitious_seed, **settings)
        else:
            scenario = facts_scenario(untouched, tokenizer, self.fact_set(), **settings)
        scenario.details["data_arguments"] = asdict(self)
        return scenario


def scenario_arguments(recorded: dict) -> ScenarioArguments:
    """``ScenarioArguments`` from a record (``unlearning_info.json``'s ``data``; one written before scenarios were
    recorded is the code scenario's), ignoring keys it does not know."""
    names = {f.name for f in fields(ScenarioArguments) if f.init}
    return ScenarioArguments(**{k: v for k, v in recorded.items() if k in names})
