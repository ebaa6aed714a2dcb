"""Which retain examples go with each training step.

The forget set drives the Trainer's dataloader (so the usual shuffling, sharding across processes
and fast-forwarding on resume apply to it). Retain examples are drawn independently, as a pure
function of (step, process): no iterator state to save, so a resumed run draws exactly what an
uninterrupted one would, and every process draws different examples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from datasets import Dataset


class RetainStream:
    """Deterministic, per-process retain batches for each training step.

    Global sample ``q = (step * num_processes + process_index) * batch_size + b`` reads position
    ``q % n`` of the seeded permutation number ``q // n`` of the ``n`` retain examples. So processes
    never share an example within a pass over the retain set, and every example is used once per
    pass before any repeats.
    """

    def __init__(
        self,
        dataset: Dataset,
        collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
        batch_size: int,
        seed: int,
        num_processes: int = 1,
        process_index: int = 0,
    ):
        if len(dataset) == 0:
            raise ValueError("the retain dataset is empty")
        if not 0 <= process_index < num_processes:
            raise ValueError(f"process_index {process_index} out of range for {num_processes} processes")
        self.dataset = dataset
        self.collate = collate
        self.num_examples = len(dataset)
        self.batch_size = batch_size
        self.seed = seed
        self.num_processes = num_processes
        self.process_index = process_index
        self._permutations: dict[int, torch.Tensor] = {}

    def _permutation(self, cycle: int) -> torch.Tensor:
        if cycle not in self._permutations:
            if len(self._permutations) > 2:  # a step touches at most two consecutive passes
                self._permutations.pop(min(self._permutations))
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + cycle)
            self._permutations[cycle] = torch.randperm(self.num_examples, generator=generator)
        return self._permutations[cycle]

    def indices(self, step: int) -> list[int]:
        """Retain example indices for this process at ``step`` (``batch_size`` of them)."""
        first = (step * self.num_processes + self.process_index) * self.batch_size
        return [
            int(self._permutation(q // self.num_examples)[q % self.num_examples])
            for q in range(first, first + self.batch_size)
        ]

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """The collated retain batch for this process at ``step``."""
        return self.collate([self.dataset[i] for i in self.indices(step)])
