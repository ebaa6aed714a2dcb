"""Reductions across processes for state that every rank must hold identically."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from accelerate import Accelerator


def mean_over_processes(tensors: Sequence[torch.Tensor], accelerator: Accelerator) -> list[torch.Tensor]:
    """Average ``tensors`` over all processes with one all-reduce of a flat fp32 buffer.

    One process: returned unchanged (no copy). Several: every rank gets the same averages, so the
    norms, masks and updates computed from them are identical everywhere.
    """
    if accelerator.num_processes == 1:
        return list(tensors)
    flat = torch.cat([t.detach().float().reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= accelerator.num_processes
    return [part.view_as(t).to(t.dtype) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors)]
