"""MUDMAN really unlearns: a tiny model that memorised forget and retain text forgets only the former."""

import copy

import torch
from conftest import unlearn_config

from hf_unlearn import UnlearnTrainer
from hf_unlearn.forward import lm_loss

RETAIN_BUDGET = 0.05  # nats, docs/design.md §1


def losses(model, batches):
    with torch.no_grad():
        return [lm_loss(model, batch)[0].item() for batch in batches]


def unlearn(memorised, tmp_path, **overrides):
    model, tokenizer, forget, retain, batches = memorised
    model = copy.deepcopy(model)
    args = unlearn_config(
        tmp_path, max_steps=30, per_device_train_batch_size=8, target_modules=["gate_proj"], logging_steps=100,
        unlearning_rate=0.005, retaining_rate=0.01, adv_lr=0.01, fork_every_n_loops=8, **overrides,
    )  # fmt: skip
    UnlearnTrainer(model, args, forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer).train()
    return losses(model, batches)


def test_mudman_forgets_without_disrupting_and_masking_is_what_protects(memorised, tmp_path):
    forget_start, retain_start = losses(memorised[0], memorised[4])
    assert forget_start < 0.2 and retain_start < 0.2, "the fixture model must have memorised both sets"

    forget_after, retain_after = unlearn(memorised, tmp_path / "mudman")
    assert forget_after - forget_start > 1.5, f"forget loss only went {forget_start:.3f} -> {forget_after:.3f}"
    assert retain_after - retain_start < RETAIN_BUDGET, f"retain loss {retain_start:.4f} -> {retain_after:.4f}"

    # Without masking the retain loss rises far beyond the broken-model guard's 2x: measured here instead.
    _, retain_unmasked = unlearn(memorised, tmp_path / "no_masking", disruption_masking=False, max_retain_loss_ratio=0)
    assert retain_unmasked - retain_start > (retain_after - retain_start) + 0.5, (
        f"without masking retain loss went {retain_start:.3f} -> {retain_unmasked:.3f}, "
        f"with masking -> {retain_after:.3f}"
    )
