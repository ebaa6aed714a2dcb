"""Fact accuracy: does greedy decoding reproduce the answer, and how likely are its tokens.

Scored in one teacher-forced forward pass: greedy decoding produces the answer exactly when every
answer token is the argmax given the prompt and the answer tokens before it.
"""

from __future__ import annotations

import torch
from datasets import Dataset
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..data.facts import encode_fact
from ..losses import IGNORE_INDEX
from .common import eval_mode, forward_examples, over_processes


def answer_token_scores(logits: torch.Tensor, labels: torch.Tensor) -> list[tuple[bool, float]]:
    """Per sequence: (all answer tokens are the argmax, mean probability of the answer tokens).

    ``logits`` (batch, seq, vocab) and ``labels`` (batch, seq) with ``-100`` outside the answer.
    """
    targets = labels[:, 1:]
    answer = targets != IGNORE_INDEX
    probs = logits[:, :-1].float().softmax(dim=-1)
    target_probs = probs.gather(2, targets.clamp(min=0)[..., None]).squeeze(-1)
    hits = probs.argmax(dim=-1) == targets
    scores = []
    for row in range(labels.shape[0]):
        mask = answer[row]
        if not mask.any():  # all() of nothing would count the fact as reproduced
            raise ValueError(f"fact {row} of the batch has no answer token to score: its answer is empty")
        scores.append((bool(hits[row][mask].all()), target_probs[row][mask].mean().item()))
    return scores


def fact_metrics(scores: list[tuple[bool, float]]) -> dict[str, float]:
    """``accuracy`` (greedy answer matches) and ``answer_prob`` (mean answer-token probability), over facts."""
    if not scores:
        raise ValueError("no facts to score")
    return {
        "accuracy": sum(correct for correct, _ in scores) / len(scores),
        "answer_prob": sum(prob for _, prob in scores) / len(scores),
    }


def fact_scores(model: nn.Module, tokenizer: PreTrainedTokenizerBase, dataset: Dataset, batch_size: int = 32) -> list[tuple[bool, float]]:
    """``answer_token_scores`` for every fact (``prompt``, ``answer``), on one or many processes."""
    encoded = [encode_fact(tokenizer, p, a) for p, a in zip(dataset["prompt"], dataset["answer"])]

    def score(indices: list[int]) -> list[tuple[bool, float]]:
        batch, logits = forward_examples(model, [encoded[i] for i in indices], tokenizer.pad_token_id)
        return answer_token_scores(logits, batch["labels"])

    with eval_mode(model):
        return over_processes(score, len(encoded), batch_size, desc="facts")


def fact_accuracy(model: nn.Module, tokenizer: PreTrainedTokenizerBase, dataset: Dataset, batch_size: int = 32) -> dict[str, float]:
    return fact_metrics(fact_scores(model, tokenizer, dataset, batch_size))


def known_facts(model: nn.Module, tokenizer: PreTrainedTokenizerBase, dataset: Dataset, batch_size: int = 32) -> Dataset:
    """The facts ``model`` answers correctly by greedy decoding: unlearning a fact it never knew measures nothing."""
    scores = fact_scores(model, tokenizer, dataset, batch_size=batch_size)
    return dataset.select([i for i, (correct, _) in enumerate(scores) if correct])
