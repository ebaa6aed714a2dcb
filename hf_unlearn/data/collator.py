"""Batching of tokenized causal-LM examples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..losses import IGNORE_INDEX


@dataclass
class LMCollator:
    """Right-pads ``input_ids`` and adds ``attention_mask`` and ``labels`` (``-100`` at padding).

    Examples with their own ``labels`` (facts: ``-100`` on the prompt, so only the answer counts)
    keep them. Otherwise labels come from the attention mask, not from comparing ids with
    ``pad_token_id``: many tokenizers reuse the end-of-text token for padding, and a real
    end-of-text token must count.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        lengths = [len(example["input_ids"]) for example in examples]
        width = max(lengths)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(examples), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
        labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
        for row, (example, length) in enumerate(zip(examples, lengths)):
            input_ids[row, :length] = torch.as_tensor(example["input_ids"], dtype=torch.long)
            mask = example.get("attention_mask")
            attention_mask[row, :length] = 1 if mask is None else torch.as_tensor(mask, dtype=torch.long)
            own_labels = example.get("labels")
            labels[row, :length] = input_ids[row, :length] if own_labels is None else torch.as_tensor(own_labels)
        labels = labels.masked_fill(attention_mask == 0, IGNORE_INDEX)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
