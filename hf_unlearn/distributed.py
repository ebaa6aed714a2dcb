"""Reductions across processes for state that every rank must hold identically."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, reduce
from torch import nn
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, Partial

from .forward import decoder_layers


def token_mean_over_processes(
    tensors: Sequence[torch.Tensor], num_tokens: torch.Tensor | int, accelerator: Accelerator
) -> list[torch.Tensor]:
    """Combine per-process token means (losses, gradients) into the mean over all processes' tokens.

    Each process computed ``tensors`` as means over its own ``num_tokens`` target tokens; weighting
    by those counts makes the result equal to what one process would compute on the global batch,
    whatever the number of processes or the lengths of the sequences each one drew. One all-reduce
    of a flat fp32 buffer; every rank gets the same values. One process: returned unchanged.
    """
    if accelerator.num_processes == 1:
        return list(tensors)
    weight = torch.as_tensor(num_tokens, dtype=torch.float32, device=tensors[0].device).reshape(1)
    flat = reduce(torch.cat([t.detach().float().reshape(-1) * weight for t in tensors] + [weight]), reduction="sum")
    flat = flat[:-1] / flat[-1]
    return [part.view_as(t).to(t.dtype) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


def mean_over_processes(tensors: Sequence[torch.Tensor], accelerator: Accelerator) -> list[torch.Tensor]:
    """Plain average over processes (for logged metrics, where each process counts the same)."""
    return token_mean_over_processes(tensors, 1, accelerator)


def mean_into_shard(tensor: torch.Tensor, like: DTensor) -> DTensor:
    """The mean over processes of each one's whole ``tensor``, this process getting only its shard in ``like``'s layout
    (FSDP2's): one reduce-scatter, as FSDP does for the gradients it takes itself."""
    mesh = like.device_mesh
    return DTensor.from_local(tensor, mesh, [Partial("avg")] * mesh.ndim).redistribute(mesh, like.placements)


def shard_frozen(model: nn.Module) -> None:
    """Shard a frozen model (UNDO's teacher) with FSDP2 as accelerate shards the trained one: one unit per decoder
    layer, then the rest, over all processes, on this process's device. Each forward gathers one layer at a time."""
    for layer in decoder_layers(model):
        fully_shard(layer)
    fully_shard(model)


def sum_over_processes(value: torch.Tensor | int, accelerator: Accelerator) -> torch.Tensor:
    """The sum of a scalar over all processes (a token count), on every rank."""
    total = torch.as_tensor(value, dtype=torch.float32, device=accelerator.device).reshape(1)
    return (reduce(total, reduction="sum") if accelerator.num_processes > 1 else total)[0]


def gather_rows(tensor: torch.Tensor, accelerator: Accelerator) -> torch.Tensor:
    """Concatenate every process's (rows, width) tensor in rank order; rows may differ per process."""
    if accelerator.num_processes == 1:
        return tensor
    return torch.cat(gather_object([tensor]))


def requested_processes(launcher_command: list[str]) -> int | None:
    """The ``--num_processes`` an ``accelerate launch`` command line asks for, if it names one."""
    text = " ".join(launcher_command)
    match = re.search(r"--num[_-]processes[= ](\d+)", text)
    return int(match.group(1)) if match else None


def check_process_count(world_size: int) -> None:
    """Refuse to run one process when ``accelerate launch`` was asked for several.

    ``accelerate launch --cpu --num_processes 2`` starts a single process without a word (it needs
    ``--multi_gpu`` for several CPU processes), so a run the user meant to be distributed would
    silently be another one. The launcher's command line tells what was asked.
    """
    if world_size > 1 or "ACCELERATE_MIXED_PRECISION" not in os.environ or "WORLD_SIZE" in os.environ:
        return  # distributed, or not started by accelerate launch
    try:
        import psutil

        asked = requested_processes(psutil.Process(os.getppid()).cmdline())
    except Exception:  # no psutil, or the parent is gone: nothing to compare
        return
    if asked and asked > 1:  # bad input, told in one line like the others (hf_unlearn.cli.INPUT_ERRORS)
        raise ValueError(
            f"accelerate launch asked for --num_processes {asked}, but this run has 1 process (accelerate launch --cpu "
            "starts a single process). For several CPU processes use `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu "
            f"--num_processes {asked} ...` or `ACCELERATE_USE_CPU=1 torchrun --nproc_per_node {asked} ...`."
        )
