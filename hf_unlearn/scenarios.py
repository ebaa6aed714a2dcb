"""The two offline robustness scenarios the demo, the benchmarks and the sweep share.

- ``code_scenario``: the MUDMAN paper's Python experiment. Forget Python source of the standard
  library, keep English prose; documents split unlearn / attack / eval before chunking. The
  attacker's best point is the lowest held-out forget loss.
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

from dataclasses import asdict, dataclass, field
from typing import Any

from datasets import Dataset
from torch import nn
from transformers import PreTrainedTokenizerBase

from .data import DataArguments, build_unlearning_data, chunk_tokens, load_text_source, split_dataset
from .data.facts import fact_sentences, facts_protocol_splits, tokenize_facts, world_capitals
from .evaluation.evaluators import Evaluator, FactEvaluator
from .evaluation.facts import known_facts


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
