"""Pure tensor functions that turn raw gradients into an unlearning update.

Everything here acts on lists of tensors (one per target weight) and has no knowledge of models,
trainers or processes: the caller reduces gradients across processes first, so every rank computes
the same norms and masks from the same numbers. Under FSDP2 the tensors are shards (``DTensor``s):
elementwise work stays on each process's shard, and a reduction (``global_norm``) is completed over
all shards by ``full_value``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.distributed.tensor import DTensor


def at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in float32 if it is in a narrower float type (bf16, fp16), else itself: state and sums are kept in
    fp32 for half-precision models, and a float64 model (the golden test's) is never rounded to fp32 on the way."""
    return tensor if tensor.dtype in (torch.float32, torch.float64) else tensor.float()


def loss_gradients(loss: torch.Tensor, leaves: Sequence[torch.Tensor], retain_graph: bool = False) -> list[torch.Tensor]:
    """The gradient of ``loss`` with respect to each of ``leaves``: zero for a leaf the loss does not depend on (a
    trained layer above the one a representation loss reads, as with CIR's ``retain_layer`` or Circuit Breakers'
    ``cb_layers`` below the last layer), where autograd would raise; all zero when it depends on none."""
    if not loss.requires_grad:
        return [torch.zeros_like(leaf) for leaf in leaves]
    return list(torch.autograd.grad(loss, leaves, retain_graph=retain_graph, materialize_grads=True))


def global_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """L2 norm of all tensors taken together, computed in fp32 or wider (bf16 sums of squares lose precision).

    One norm per tensor (``torch._foreach_norm``: no full-size temporaries), then the norm of those.
    Sharded tensors (FSDP2) give the norm over every process's shard: the same number on every process.
    """
    if not tensors:
        raise ValueError("global_norm needs at least one tensor")
    norms = torch._foreach_norm([at_least_float32(t.detach()) for t in tensors])
    return full_value(torch.linalg.vector_norm(torch.stack(norms)))


def full_value(value: torch.Tensor) -> torch.Tensor:
    """A plain tensor of ``value``: a reduction over sharded tensors (FSDP2's ``DTensor``) holds each process's
    part until it is asked for; this reduces it across the shards (one all-reduce of a scalar)."""
    return value.full_tensor() if isinstance(value, DTensor) else value


def normalize_(grads: Sequence[torch.Tensor], norm: torch.Tensor | None = None, sign: float = 1.0) -> Sequence[torch.Tensor]:
    """Scale ``grads`` jointly, in place, so that their global L2 norm is ``sqrt(N)``, N the number of elements
    (times ``sign``); returns them.

    The ``sqrt(N)`` target makes the root-mean-square element equal to 1 whatever the target modules,
    so one unlearning rate transfers between experiments with different target modules (MUDMAN).
    An all-zero gradient stays zero instead of turning into NaN. ``norm``: ``global_norm(grads)`` if
    the caller has it already.
    """
    norm = global_norm(grads) if norm is None else norm
    scale = sign * sum(g.numel() for g in grads) ** 0.5 / norm
    torch._foreach_mul_(list(grads), scale if norm > 0 else 0.0)
    return grads


def disruption_mask(unlearning_grad: torch.Tensor, retain_grad: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the elements where both gradients have the same sign (Disruption Masking).

    Descending ``unlearning_grad`` on such an element also descends the retain loss, so the update
    cannot disrupt retained behaviour to first order. Elements where exactly one of the two is zero
    are dropped; where both are zero the masked update is zero anyway.
    """
    if unlearning_grad.shape != retain_grad.shape:
        raise ValueError(f"shape mismatch: {tuple(unlearning_grad.shape)} vs {tuple(retain_grad.shape)}")
    return torch.sign(unlearning_grad) == torch.sign(retain_grad)


def ema_(accumulators: Sequence[torch.Tensor], values: Sequence[torch.Tensor], momentum: float) -> Sequence[torch.Tensor]:
    """In place, for every tensor at once: ``accumulator = momentum * accumulator + (1 - momentum) * value``."""
    torch._foreach_mul_(list(accumulators), momentum)
    torch._foreach_add_(list(accumulators), list(values), alpha=1.0 - momentum)
    return accumulators


def top_fraction_mask(scores: Sequence[torch.Tensor], fraction: float) -> list[torch.Tensor]:
    """Boolean masks keeping the ``fraction`` of elements with the highest scores, over all tensors together.

    WAGLE's static weight selection: ties at the threshold are broken by position (``topk``).
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if isinstance(scores[0], DTensor):
        return sharded_top_fraction_mask(scores, fraction)
    flat = torch.cat([s.detach().reshape(-1) for s in scores])
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    chosen[flat.topk(max(1, round(fraction * flat.numel()))).indices] = True
    return [part.view_as(s) for part, s in zip(chosen.split([s.numel() for s in scores]), scores)]


def sharded_top_fraction_mask(scores: Sequence[DTensor], fraction: float) -> list[DTensor]:
    """``top_fraction_mask`` of non-negative scores sharded by FSDP2, each process keeping its shards only.

    The k-th largest score over all shards is found by bisection on its bits (non-negative floats order as
    their bit patterns do), one all-reduce of a count per bit; ties at it are kept in process order, then by
    position, until k are kept. Without ties this is exactly the set ``topk`` keeps on the whole tensors.
    """
    mesh = scores[0].device_mesh
    if mesh.ndim != 1:
        raise NotImplementedError("WAGLE (wagle_fraction < 1) supports a 1-D FSDP mesh only (no HSDP): run it with DDP")
    group = mesh.get_group()
    flat = torch.cat([s.to_local().detach().reshape(-1) for s in scores])
    if (flat < 0).any():
        raise ValueError("sharded_top_fraction_mask needs non-negative scores")
    k = max(1, round(fraction * sum(s.numel() for s in scores)))

    def reduced(value: torch.Tensor, op: torch.distributed.ReduceOp = torch.distributed.ReduceOp.SUM) -> int:
        value = value.reshape(1).to(torch.int64)
        torch.distributed.all_reduce(value, op=op, group=group)
        return int(value.item())

    bits = flat.view(torch.int32 if flat.element_size() == 4 else torch.int64)
    largest = bits.max() if bits.numel() else torch.zeros((), dtype=bits.dtype)  # a process may hold no elements
    low, high = 0, reduced(largest, torch.distributed.ReduceOp.MAX)  # the threshold's bits lie in [low, high]
    while low < high:  # the largest t with at least k scores >= t
        middle = (low + high + 1) // 2
        if reduced((bits >= middle).sum()) >= k:
            low = middle
        else:
            high = middle - 1
    above, tied = bits > low, bits == low
    ties = torch.zeros(mesh.size(), dtype=torch.int64, device=flat.device)
    ties[mesh.get_local_rank()] = tied.sum()
    torch.distributed.all_reduce(ties, group=group)
    needed = k - reduced(above.sum())
    take = min(max(needed - int(ties[: mesh.get_local_rank()].sum()), 0), int(ties[mesh.get_local_rank()]))
    chosen = above.clone()
    chosen[tied.nonzero().flatten()[:take]] = True
    parts = chosen.split([s.to_local().numel() for s in scores])
    return [DTensor.from_local(part.view_as(s.to_local()), mesh, s.placements, shape=s.shape, stride=s.stride()) for part, s in zip(parts, scores)]


# --- Collapse of Irrelevant Representations (CIR) ---


def principal_directions(data: torch.Tensor, num_components: int, niter: int = 16, seed: int = 0) -> torch.Tensor:
    """Unit rows: the mean direction of ``data``, then its top ``num_components`` principal components.

    ``data`` is (samples, width), raw (not centred): the mean is itself a direction shared by all
    samples. Components come from ``torch.pca_lowrank`` (centred; randomised but seeded, so every
    process and every resumed run gets the same ones). The mean is *not* orthogonalised against the
    components, as in CIR's authors' code. Returns (1 + num_components, width), fewer components
    if there are fewer samples.
    """
    data = at_least_float32(data)
    mean = data.mean(dim=0, keepdim=True)
    directions = [mean / mean.norm().clamp(min=1e-12)]
    num_components = min(num_components, data.shape[0] - 1, data.shape[1] - 1)
    if num_components > 0:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            _, _, components = torch.pca_lowrank(data, q=num_components, center=True, niter=niter)
        directions.append(components.T)
    return torch.cat(directions).contiguous()


def orthonormal_basis(directions: torch.Tensor) -> torch.Tensor:
    """Orthonormal rows spanning the same space as the rows of ``directions`` (QR)."""
    q, _ = torch.linalg.qr(at_least_float32(directions).T)
    return q.T.contiguous()


def collapse(vectors: torch.Tensor, directions: torch.Tensor | None, sequential: bool = False) -> torch.Tensor:
    """Remove from each row of ``vectors`` (n, width) its components along the unit rows of ``directions``.

    ``sequential=False``: ``directions`` are orthonormal and the result is the exact projection onto
    their orthogonal complement. ``sequential=True``: subtract each direction's projection in turn,
    first row first (CIR's authors' projection, for directions that are not orthogonal: the mean
    and the principal components); the result is orthogonal to the last direction only.
    """
    if directions is None or directions.numel() == 0:
        return vectors
    directions = directions.to(vectors.dtype)
    if not sequential:
        return vectors - (vectors @ directions.T) @ directions
    for direction in directions:
        vectors = vectors - (vectors @ direction)[:, None] * direction
    return vectors


def rebuild_weight_grad(
    activations: torch.Tensor,
    output_grads: torch.Tensor,
    act_directions: torch.Tensor | None,
    grad_directions: torch.Tensor | None,
    sequential: bool = False,
) -> torch.Tensor:
    """A linear layer's weight gradient sum_t g_t x_t^T from collapsed tokens: (out, in).

    ``activations`` (tokens, in) are the layer's inputs x_t and ``output_grads`` (tokens, out) the
    loss gradients at its outputs g_t, each collapsed along its directions (see ``collapse``). With
    no directions this is exactly autograd's weight gradient restricted to those tokens.
    """
    grads = collapse(at_least_float32(output_grads), grad_directions, sequential)
    return grads.T @ collapse(at_least_float32(activations), act_directions, sequential)
