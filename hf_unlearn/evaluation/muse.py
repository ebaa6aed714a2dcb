"""``MUSEEvaluator``: MUSE's metrics (Shi et al. 2024) on a model, as OpenUnlearning computes them.

- ``verbmem_forget``: ROUGE-L F1 of 128 greedy tokens after each forget-text prompt against its true continuation;
- ``knowmem_forget`` / ``knowmem_retain``: ROUGE-L F1 of 32 greedy tokens answering each question after all the set's
  in-context examples, cut at a blank line or the next question (utility is ``knowmem_retain``);
- ``privleak_auc``: Min-K % Prob (k = 0.4) AUC of telling forget from holdout texts, and, given the retain model's
  AUC, ``privleak``: its relative change in % (0 is the retain model's; negative: under-unlearned).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datasets import Dataset
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..data.recipes import muse
from ..data.sources import QA_TEMPLATE
from . import benchmarks as metrics

KNOWMEM_STOP = ("\n\n", "\nQuestion", "Question:")  # OpenUnlearning's knowmem stop words


@dataclass
class MUSEEvaluator:
    """MUSE's metrics (module docstring). Datasets in the Hub's schema: ``verbmem`` (``prompt``, ``gt``), ``knowmem_*``
    (``question``, ``answer``; ``*_icl`` the in-context examples), ``privleak_*`` (``text``). ``reference``: the retain
    model's results, a dict or a JSON file (``reference_results`` on that model, or OpenUnlearning's ``MUSE_EVAL.json``).
    ``template``: how a question is asked, or None for the tokenizer's chat template."""

    verbmem: Dataset
    knowmem_forget: Dataset
    knowmem_forget_icl: Dataset
    knowmem_retain: Dataset
    knowmem_retain_icl: Dataset
    privleak_forget: Dataset
    privleak_holdout: Dataset
    reference: dict | str | Path | None = None
    template: str | None = QA_TEMPLATE
    verbmem_new_tokens: int = 128
    knowmem_new_tokens: int = 32
    max_length: int = 2048  # tokens of a text scored for PrivLeak
    batch_size: int = 8
    reference_auc: float | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        if self.reference is not None:
            source = str(self.reference) if not isinstance(self.reference, dict) else "the reference results"
            results = self.reference if isinstance(self.reference, dict) else json.loads(Path(self.reference).read_text())
            self.reference_auc = float(metrics.reference_values(results, "muse", source))

    @classmethod
    def from_hub(cls, corpus: str = "news", path: str | None = None, **settings) -> MUSEEvaluator:
        """The evaluator on ``muse-bench/MUSE-News`` or ``MUSE-Books`` (or a local copy at ``path``)."""
        def load(name: str, split: str) -> Dataset:
            return muse(corpus, name, split, path=path)

        return cls(
            load("verbmem", "forget"), load("knowmem", "forget_qa"), load("knowmem", "forget_qa_icl"), load("knowmem", "retain_qa"),
            load("knowmem", "retain_qa_icl"), load("privleak", "forget"), load("privleak", "holdout"), **settings,
        )  # fmt: skip

    def privleak_auc(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> float:
        scores = [
            [metrics.min_k_score(lp) for lp in metrics.token_logprobs(model, tokenizer, texts["text"], self.max_length, self.batch_size)]
            for texts in (self.privleak_forget, self.privleak_holdout)
        ]
        return metrics.mia_auc(*scores)

    def reference_results(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> dict:
        """What PrivLeak needs of a retain model: its Min-K % AUC (save as JSON for ``reference``)."""
        return {"benchmark": "muse", "privleak_auc": self.privleak_auc(model, tokenizer)}

    def _knowmem(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, qa: Dataset, icl: Dataset) -> float:
        shots = list(zip(icl["question"], icl["answer"]))
        prompts = [metrics.encode_prompt(tokenizer, question, self.template, shots) for question in qa["question"]]
        answers = metrics.greedy_answers(model, tokenizer, prompts, self.knowmem_new_tokens, self.template is None, KNOWMEM_STOP, self.batch_size)
        return float(np.mean(metrics.rouge_l(answers, qa["answer"], "fmeasure")))

    def __call__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> dict[str, float]:
        continuations = metrics.greedy_answers(model, tokenizer, self.verbmem["prompt"], self.verbmem_new_tokens, False, batch_size=self.batch_size)
        results = {
            "verbmem_forget": float(np.mean(metrics.rouge_l(continuations, [gt.strip() for gt in self.verbmem["gt"]], "fmeasure"))),
            "knowmem_forget": self._knowmem(model, tokenizer, self.knowmem_forget, self.knowmem_forget_icl),
            "knowmem_retain": self._knowmem(model, tokenizer, self.knowmem_retain, self.knowmem_retain_icl),
            "privleak_auc": self.privleak_auc(model, tokenizer),
        }
        if self.reference_auc is not None:
            results["privleak"] = metrics.privleak(results["privleak_auc"], self.reference_auc)
        return results
