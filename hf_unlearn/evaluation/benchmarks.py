"""The metrics of TOFU and MUSE as OpenUnlearning computes them, and the model passes they need.

Each metric is a small function of per-example statistics (``src/evals/metrics/`` of locuslab/open-unlearning;
tests/test_benchmark_metrics.py compares every one with a transcription of that code, to 1e-6):

- the mean token loss of an answer (``answer_losses``), whose ``exp(-loss)`` is TOFU's probability;
- the truth ratio R = P(perturbed) / P(paraphrased), P the per-token-normalised probability and the perturbed
  answers' losses averaged before the exponential; the forget set scores ``mean(min(R, 1/R))``, other sets
  ``mean(max(0, 1 - R))``;
- forget quality: the p-value of the two-sample Kolmogorov-Smirnov test between the model's forget-set truth ratios
  and the retain model's; model utility: the harmonic mean of nine values;
- ROUGE-L (recall for TOFU, F1 for MUSE) of greedy answers, with ``rouge_score``'s stemmer;
- Min-K % Prob (k = 0.4) membership scores, their AUC (sklearn) forget vs holdout, and PrivLeak relative to the
  retain model's AUC.

docs/benchmarks.md says where the papers' own code differs and which this module follows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..data.facts import answer_text
from ..losses import IGNORE_INDEX
from .common import eval_mode, forward_examples, greedy_new_tokens, over_processes

# OpenUnlearning adds this to every denominator; kept so that values match theirs to the last digit.
EPSILON = 1e-10
MIN_K = 0.4  # MUSE's PrivLeak: the 40 % least likely tokens

# scipy.stats, sklearn and rouge_score (nltk) are imported by the metrics that use them: at the top of this module
# they added 5 s to the start of every `hf-unlearn` command (18 s -> 12 s on 2 AMD EPYC cores), TOFU or not.


# --- metrics of per-example statistics -----------------------------------------------------------


def answer_losses(logits: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """Per sequence, the mean next-token cross-entropy over the tokens whose label is not ``-100``."""
    targets = labels[:, 1:]
    losses = nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none")
    return (losses.sum(-1) / (targets != IGNORE_INDEX).sum(-1)).tolist()


def probability(losses: Sequence[float]) -> float:
    """TOFU's probability: the mean over questions of exp(-mean token loss of the answer)."""
    return float(np.mean(np.exp(-np.asarray(losses))))


def normalized_probability(losses: Sequence[float], wrong_losses: Sequence[Sequence[float]]) -> float:
    """TOFU's probability on real authors and world facts: the answer's against the sum of it and the wrong answers'."""
    correct, wrong = np.exp(-np.asarray(losses)), np.exp(-np.asarray(wrong_losses)).sum(-1)
    return float(np.mean(correct / (correct + wrong + EPSILON)))


def truth_ratios(losses: Sequence[float], wrong_losses: Sequence[Sequence[float]]) -> np.ndarray:
    """Per question, R = P(wrong) / P(correct); the wrong answers' mean losses are averaged, then exponentiated."""
    return np.exp(-np.asarray(wrong_losses).mean(-1)) / (np.exp(-np.asarray(losses)) + EPSILON)


def truth_ratio_score(ratios: np.ndarray, forget: bool) -> float:
    """The forget set: mean(min(R, 1/R)), 1 when the right and wrong answers are alike; others: mean(max(0, 1 - R))."""
    ratios = np.asarray(ratios)
    return float(np.mean(np.minimum(ratios, 1 / (ratios + EPSILON)) if forget else np.maximum(0, 1 - ratios)))


def forget_quality(ratios: Sequence[float], reference_ratios: Sequence[float]) -> float:
    """The KS-test p-value of the forget-set truth ratios against the retain model's: 1 is indistinguishable."""
    from scipy.stats import ks_2samp

    return float(ks_2samp(np.asarray(ratios), np.asarray(reference_ratios)).pvalue)


def model_utility(values: Sequence[float]) -> float:
    """The harmonic mean of TOFU's nine retain, real-author and world-fact values."""
    from scipy.stats import hmean

    return float(hmean(list(values)))


def rouge_l(generations: Sequence[str], answers: Sequence[str], measure: str = "recall") -> list[float]:
    """ROUGE-L of each generation against its answer (``recall`` or ``fmeasure``), with Porter stemming."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [getattr(scorer.score(answer, generation)["rougeL"], measure) for generation, answer in zip(generations, answers)]


def min_k_score(token_logprobs: Sequence[float], k: float = MIN_K) -> float:
    """Min-K % Prob: minus the mean of the ``k`` share (at least one) of lowest token log-probabilities; 0 without tokens."""
    logprobs = np.asarray(token_logprobs, dtype=np.float64)
    if logprobs.size == 0:
        return 0.0
    return float(-np.mean(np.sort(logprobs)[: max(1, int(len(logprobs) * k))]))


def mia_auc(forget_scores: Sequence[float], holdout_scores: Sequence[float]) -> float:
    """ROC AUC of telling holdout (label 1) from forget (label 0) texts by their score: 1 when forget texts are the
    far more likely ones (lower scores), 0.5 when the two cannot be told apart."""
    from sklearn.metrics import roc_auc_score

    labels = [0] * len(forget_scores) + [1] * len(holdout_scores)
    return float(roc_auc_score(labels, list(forget_scores) + list(holdout_scores)))


def privleak(auc: float, reference_auc: float) -> float:
    """MUSE's PrivLeak in %: the relative change of the AUC from the retain model's, on MUSE's AUC (1 - ``mia_auc``)."""
    score, reference = 1 - auc, 1 - reference_auc
    return (score - reference) / (reference + EPSILON) * 100


# --- model passes -------------------------------------------------------------------------------


def encode_prompt(tokenizer: PreTrainedTokenizerBase, question: str, template: str | None, shots: Sequence[tuple[str, str]] = ()) -> str:
    """The text before an answer: ``template`` (``{question}`` filled in) after the in-context ``shots`` (question,
    answer), each followed by a blank line; ``template=None`` uses the tokenizer's chat template instead."""
    if template is None:
        messages = [m for q, a in shots for m in ({"role": "user", "content": q}, {"role": "assistant", "content": a})]
        return tokenizer.apply_chat_template(messages + [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True)
    before = "".join(template.format(question=q) + answer_text(template, a) + "\n\n" for q, a in shots)
    return before + template.format(question=question)


def encode_answer(tokenizer: PreTrainedTokenizerBase, prompt: str, answer: str, chat: bool, eos: bool) -> dict[str, list[int]]:
    """``input_ids`` of prompt + answer (+ EOS when ``eos``) with ``labels`` on the answer only. Prompt and answer are
    tokenized apart, so an answer's tokens do not depend on the question; a chat prompt carries its special tokens."""
    prompt_ids = tokenizer(prompt, add_special_tokens=not chat)["input_ids"]
    answer_ids = tokenizer(answer if chat else answer_text(prompt, answer), add_special_tokens=False)["input_ids"]
    answer_ids += [tokenizer.eos_token_id] if eos else []
    return {"input_ids": prompt_ids + answer_ids, "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids}


def example_losses(model: nn.Module, tokenizer: PreTrainedTokenizerBase, examples: list[dict], batch_size: int) -> list[float]:
    """``answer_losses`` of every example (``input_ids``, ``labels``), on one or many processes."""

    def score(indices: list[int]) -> list[float]:
        batch, logits = forward_examples(model, [examples[i] for i in indices], tokenizer.pad_token_id)
        return answer_losses(logits, batch["labels"])

    with eval_mode(model):
        return over_processes(score, len(examples), batch_size, desc="answer losses")


def token_logprobs(model: nn.Module, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int, batch_size: int) -> list[list[float]]:
    """Per text (its first ``max_length`` tokens after the tokenizer's own start), the log-probability of every token
    but the first and the last, as OpenUnlearning's Min-K % attack reads them (its last label is taken for an EOS)."""
    start = len(tokenizer("")["input_ids"])  # a BOS, for tokenizers that add one: kept beyond max_length, as theirs
    examples = [{"input_ids": ids, "labels": [IGNORE_INDEX] + ids[1:]} for ids in (tokenizer(t)["input_ids"][: start + max_length] for t in texts)]

    def score(indices: list[int]) -> list[list[float]]:
        batch, logits = forward_examples(model, [examples[i] for i in indices], tokenizer.pad_token_id)
        logprobs = logits[:, :-1].log_softmax(-1).gather(2, batch["input_ids"][:, 1:, None]).squeeze(-1)
        return [logprobs[row, : len(examples[i]["input_ids"]) - 2].tolist() for row, i in enumerate(indices)]

    with eval_mode(model):
        return over_processes(score, len(examples), batch_size, desc="token log-probabilities")


@torch.no_grad()
def greedy_answers(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], max_new_tokens: int, chat: bool,
    stop: Sequence[str] = (), batch_size: int = 16,
) -> list[str]:  # fmt: skip
    """Greedy continuations of ``prompts`` (left-padded batches), decoded without special tokens, cut at the first of
    ``stop`` and stripped, as OpenUnlearning's ROUGE reads them."""
    encoded = [tokenizer(prompt, add_special_tokens=not chat)["input_ids"] for prompt in prompts]

    def generate(indices: list[int]) -> list[str]:
        texts = tokenizer.batch_decode(greedy_new_tokens(model, tokenizer, [encoded[i] for i in indices], max_new_tokens), skip_special_tokens=True)
        for word in stop:
            texts = [text.split(word)[0] for text in texts]
        return [text.strip() for text in texts]

    with eval_mode(model):
        return over_processes(generate, len(encoded), batch_size, desc="greedy answers")


# --- the retain model's results -----------------------------------------------------------------

# What forget quality and PrivLeak compare with, by benchmark: this project's key, and OpenUnlearning's (the
# TOFU_EVAL.json / MUSE_EVAL.json its evaluation writes, which it reads back as ``retain_logs_path``).
REFERENCE_KEYS = {"tofu": ("forget_truth_ratios", "forget_truth_ratio"), "muse": ("privleak_auc", "mia_min_k")}


def reference_values(results: dict, benchmark: str, source: str) -> list[float] | float:
    """The retain model's forget-set truth ratios (TOFU) or Min-K % AUC (MUSE) from ``results``: this project's result
    file (``TOFUEvaluator.reference_results``) or OpenUnlearning's evaluation log. ``source`` names it in errors."""
    ours, theirs = REFERENCE_KEYS[benchmark]
    if ours in results:
        return results[ours]
    if theirs in results:
        logged = results[theirs]
        return [entry["score"] for entry in logged["value_by_index"].values()] if benchmark == "tofu" else logged["agg_value"]
    raise ValueError(
        f"{source} holds no {ours!r} (nor OpenUnlearning's {theirs!r}): give the result file the {benchmark} evaluator "
        f"wrote for the retain model (--retain_logs), or the retain model itself (--retain_model)"
    )
