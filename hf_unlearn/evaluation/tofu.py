"""``TOFUEvaluator``: TOFU's metrics (Maini et al. 2024) on a model, as OpenUnlearning computes them.

Four sets of questions in TOFU's schema (``locuslab/TOFU``'s perturbed configs, or the fictitious facts written in it,
``hf_unlearn.data.fictitious.fictitious_tofu``): the forget set and the retain set (``question``, ``answer``,
``paraphrased_answer``, ``perturbed_answer``), real authors and world facts (``question``, ``answer``,
``perturbed_answer``). For each: probability, ROUGE-L recall of the greedy answer and truth ratio
(``evaluation/benchmarks.py``); then model utility, the harmonic mean of the nine values of the three sets other than
the forget set, and, given the retain model's forget-set truth ratios, forget quality.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datasets import Dataset
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..data.recipes import TOFU_OPTION_COLUMNS, TOFU_PERTURBED_COLUMNS, tofu
from ..data.schema import DatasetSchemaError, check_columns, describe
from ..data.sources import QA_TEMPLATE
from . import benchmarks as metrics

# The sets, in the order model utility lists them after the forget set, with their columns.
TOFU_SETS = {"forget": TOFU_PERTURBED_COLUMNS, "retain": TOFU_PERTURBED_COLUMNS, "real_authors": TOFU_OPTION_COLUMNS,
             "world_facts": TOFU_OPTION_COLUMNS}  # fmt: skip


@dataclass
class TOFUEvaluator:
    """TOFU's metrics: ``<set>_probability``, ``<set>_rouge``, ``<set>_truth_ratio`` for the four sets,
    ``model_utility`` and, with ``reference``, ``forget_quality``.

    ``reference``: the retain model's results, a dict or a JSON file (``reference_results`` of this evaluator on that
    model, or OpenUnlearning's ``TOFU_EVAL.json``). ``template``: how a question is asked (``{question}`` filled
    in), or None for the tokenizer's chat template. ``answer_eos``: score the EOS after each answer, as
    OpenUnlearning does (off for a model fine-tuned on answers without one). ``max_new_tokens``: of the greedy
    answers ROUGE scores (TOFU's 200).
    """

    forget: Dataset
    retain: Dataset
    real_authors: Dataset
    world_facts: Dataset
    reference: dict | str | Path | None = None
    template: str | None = QA_TEMPLATE
    answer_eos: bool = True
    max_new_tokens: int = 200
    batch_size: int = 16
    reference_ratios: list[float] | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        for name, columns in TOFU_SETS.items():
            dataset, where = getattr(self, name), f"TOFUEvaluator {name}"
            check_columns(dataset, where, columns)
            if len({len(wrong) for wrong in dataset["perturbed_answer"]}) != 1:
                raise DatasetSchemaError(where, "perturbed_answer", "has lists of different lengths", describe(columns))
        if self.reference is not None:
            source = str(self.reference) if not isinstance(self.reference, dict) else "the reference results"
            results = self.reference if isinstance(self.reference, dict) else json.loads(Path(self.reference).read_text())
            self.reference_ratios = list(metrics.reference_values(results, "tofu", source))
            if len(self.reference_ratios) != len(self.forget):
                raise ValueError(
                    f"reference: {source} holds {len(self.reference_ratios)} forget truth ratios, the forget set has "
                    f"{len(self.forget)} questions: compute the retain model's on the same forget split"
                )

    @classmethod
    def from_hub(cls, forget_split: str = "forget10", path: str = "locuslab/TOFU", **settings) -> TOFUEvaluator:
        """The evaluator on ``locuslab/TOFU`` (or its local copy at ``path``): ``forget_split``'s perturbed config,
        ``retain_perturbed``, ``real_authors_perturbed`` and ``world_facts_perturbed``, as OpenUnlearning evaluates."""
        sets = ("retain_perturbed", "real_authors_perturbed", "world_facts_perturbed")
        return cls(tofu(f"{forget_split}_perturbed", path=path), *(tofu(name, path=path) for name in sets), **settings)

    def _losses(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, dataset: Dataset, column: str) -> np.ndarray:
        """Mean token losses of ``column``'s answers: (questions,) or, for a list column, (questions, answers)."""
        chat = self.template is None
        prompts = [metrics.encode_prompt(tokenizer, question, self.template) for question in dataset["question"]]
        answers = dataset[column]
        width = len(answers[0]) if isinstance(answers[0], list) else None
        flat = [(p, a) for p, row in zip(prompts, answers) for a in (row if width else [row])]
        examples = [metrics.encode_answer(tokenizer, p, a, chat, self.answer_eos) for p, a in flat]
        losses = np.asarray(metrics.example_losses(model, tokenizer, examples, self.batch_size))
        return losses.reshape(-1, width) if width else losses

    def truth_ratios(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, name: str = "forget") -> np.ndarray:
        """Per question of set ``name``: P(perturbed) / P(paraphrased) (the answer's, for real authors and world facts)."""
        dataset = getattr(self, name)
        correct = "paraphrased_answer" if "paraphrased_answer" in TOFU_SETS[name] else "answer"
        return metrics.truth_ratios(self._losses(model, tokenizer, dataset, correct), self._losses(model, tokenizer, dataset, "perturbed_answer"))

    def reference_results(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> dict:
        """What forget quality needs of a retain model: its forget-set truth ratios (save as JSON for ``reference``)."""
        return {"benchmark": "tofu", "forget_truth_ratios": self.truth_ratios(model, tokenizer).tolist()}

    def __call__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> dict[str, float]:
        results = {}
        for name, columns in TOFU_SETS.items():
            dataset = getattr(self, name)
            losses, wrong = (self._losses(model, tokenizer, dataset, column) for column in ("answer", "perturbed_answer"))
            if "paraphrased_answer" in columns:  # forget and retain: the answer alone; the truth ratio on the paraphrase
                results[f"{name}_probability"] = metrics.probability(losses)
                ratios = metrics.truth_ratios(self._losses(model, tokenizer, dataset, "paraphrased_answer"), wrong)
            else:  # real authors and world facts: the answer against the wrong ones, in both
                results[f"{name}_probability"] = metrics.normalized_probability(losses, wrong)
                ratios = metrics.truth_ratios(losses, wrong)
            prompts = [metrics.encode_prompt(tokenizer, question, self.template) for question in dataset["question"]]
            answers = metrics.greedy_answers(model, tokenizer, prompts, self.max_new_tokens, self.template is None, batch_size=self.batch_size)
            results[f"{name}_rouge"] = float(np.mean(metrics.rouge_l(answers, dataset["answer"], "recall")))
            results[f"{name}_truth_ratio"] = metrics.truth_ratio_score(ratios, forget=name == "forget")
            if name == "forget" and self.reference_ratios is not None:
                results["forget_quality"] = metrics.forget_quality(ratios, self.reference_ratios)
        utility = [results[f"{name}_{value}"] for name in list(TOFU_SETS)[1:] for value in ("probability", "rouge", "truth_ratio")]
        results["model_utility"] = metrics.model_utility(utility)
        return results
