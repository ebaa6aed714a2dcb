"""Text samples: what the model answers to a few held-out forget prompts, greedily.

Nobody believes a loss table about forgetting without seeing the text. An attack records, at its start and at
each evaluation that improves its best point, the greedy completions of the first ``n`` held-out forget prompts:
for facts, split B's questions (through the evaluator's prompts, so an in-context or prompt attack's prefix is
part of what the model sees); for text, the first ``prompt_tokens`` scored tokens of a held-out chunk (after any
prefix), its true continuation shown beside. The report then shows them for the untouched model, the unlearned
model and the attacked model at the attacker's best.
"""

from __future__ import annotations

from typing import Any

import torch
from datasets import Dataset
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..forward import is_sharded
from ..losses import IGNORE_INDEX
from .common import eval_mode, greedy_new_tokens

PROMPT_TOKENS = 24  # a text prompt: this many tokens of the held-out chunk (after any prefix)
NEW_TOKENS = 16  # tokens generated per prompt: a fact's answer, or the start of a continuation
SHOWN_PROMPT_CHARACTERS = 160  # an in-context prefix can be long: the report shows the prompt's end


def sample_prompts(eval_forget: Dataset, facts: Dataset | None, tokenizer: PreTrainedTokenizerBase, n: int) -> list[dict[str, Any]]:
    """The first ``n`` held-out prompts: ``{"input_ids", "prompt", "expected"}`` each. ``facts`` (split B, as the
    facts evaluator asks them: ``prompt``, ``answer``) when the scenario scores facts, else chunks of ``eval_forget``
    (tokenized; ``labels`` of -100 mark a prefix, which stays in the input but not in the shown prompt)."""
    if facts is not None:
        rows = facts.select(range(min(n, len(facts))))
        return [{"input_ids": tokenizer(row["prompt"])["input_ids"], "prompt": row["prompt"], "expected": row["answer"]} for row in rows]
    prompts = []
    for example in eval_forget.select(range(min(n, len(eval_forget)))):
        ids, labels = list(example["input_ids"]), list(example.get("labels") or example["input_ids"])
        scored = next((i for i, label in enumerate(labels) if label != IGNORE_INDEX), 0)  # the text after any prefix
        cut = min(scored + PROMPT_TOKENS, len(ids) - 1)
        prompts.append({
            "input_ids": ids[:cut], "prompt": tokenizer.decode(ids[scored:cut], skip_special_tokens=True),
            "expected": tokenizer.decode(ids[cut : cut + NEW_TOKENS], skip_special_tokens=True),
        })  # fmt: skip
    return prompts


@torch.no_grad()
def greedy_completions(model: nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``prompts`` with ``completion``: ``NEW_TOKENS`` greedy tokens after each, all prompts in one batch (left-padded,
    masked: a generated token is one forward of the batch, not one per prompt)."""
    if not prompts:
        return []
    with eval_mode(model):
        generated = greedy_new_tokens(model, tokenizer, [prompt["input_ids"] for prompt in prompts], NEW_TOKENS, synced_gpus=is_sharded(model))
    samples = []
    for prompt, tokens in zip(prompts, generated):
        shown = prompt["prompt"] if len(prompt["prompt"]) <= SHOWN_PROMPT_CHARACTERS else "…" + prompt["prompt"][-SHOWN_PROMPT_CHARACTERS:]
        completion = tokenizer.decode(tokens, skip_special_tokens=True)
        samples.append({"prompt": shown, "completion": completion, **({"expected": prompt["expected"]} if prompt["expected"] is not None else {})})
    return samples
