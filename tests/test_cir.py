"""CIR: the collapse math alone, then the method through UnlearnTrainer."""

import copy

import pytest
import torch
from conftest import unlearn_config

from hf_unlearn import CIRConfig, DisruptionBudgetCallback, UnlearnTrainer
from hf_unlearn.gradients import collapse, principal_basis, rebuild_weight_grad
from hf_unlearn.losses import mlp_breaking_loss, relative_representation_distance
from hf_unlearn.trainer import METHOD_STATE_NAME

# --- pure functions ------------------------------------------------------------------------------


def test_rebuilt_gradient_with_empty_bases_is_autograds_on_selected_tokens():
    torch.manual_seed(0)
    layer = torch.nn.Linear(5, 3, bias=False)
    x = torch.randn(2, 4, 5)
    selected = torch.tensor([[False, True, True, False], [True, False, True, True]])
    out = layer(x)
    target = torch.randn_like(out)
    loss = ((out - target) ** 2)[selected].sum()  # only the selected tokens count
    (weight_grad,) = torch.autograd.grad(loss, layer.weight, retain_graph=True)
    (output_grad,) = torch.autograd.grad(loss, out)
    rebuilt = rebuild_weight_grad(x[selected], output_grad[selected], None, None)
    assert torch.allclose(rebuilt, weight_grad, atol=1e-6)
    empty = torch.zeros(0, 5)
    assert torch.allclose(rebuild_weight_grad(x[selected], output_grad[selected], empty, torch.zeros(0, 3)), weight_grad, atol=1e-6)


def test_collapse_leaves_nothing_along_the_basis():
    torch.manual_seed(1)
    data = torch.randn(200, 16) + 3.0  # a strong mean direction
    basis = principal_basis(data, num_components=4, niter=8)
    assert basis.shape == (5, 16)
    assert torch.allclose(basis @ basis.T, torch.eye(5), atol=1e-5), "orthonormal rows"
    collapsed = collapse(data, basis)
    assert (collapsed @ basis.T).abs().max() < 1e-4
    # What is orthogonal to the basis is untouched.
    orthogonal = collapse(torch.randn(3, 16), basis)
    assert torch.allclose(collapse(orthogonal, basis), orthogonal, atol=1e-5)


def test_pca_recovers_a_planted_common_direction():
    torch.manual_seed(2)
    planted = torch.nn.functional.normalize(torch.randn(32), dim=0)
    # Many tokens share the planted direction (with varying strength), on top of isotropic noise.
    data = torch.randn(500, 1) * 5.0 * planted + 0.3 * torch.randn(500, 32)
    basis = principal_basis(data, num_components=3, niter=16, seed=0)
    captured = (basis @ planted).norm()  # the norm of the planted direction's projection on the span
    assert captured > 0.99
    assert torch.equal(basis, principal_basis(data, num_components=3, niter=16, seed=0)), "seeded: deterministic"


def test_mlp_breaking_and_relative_distance_by_hand():
    out = [torch.tensor([[1.0, 0.0], [0.0, 1.0]])]
    original = [torch.tensor([[2.0, 0.0], [0.0, 2.0]])]  # mean norm 2 -> scale 4
    # dot products 2 and 2, / 4 -> 0.5 each
    assert mlp_breaking_loss(out, original).item() == pytest.approx(0.5)
    assert mlp_breaking_loss([-out[0]], original).item() == 0.0, "clipped at the floor 0"
    hidden, orig = torch.tensor([[[3.0, 4.0], [1.0, 0.0]]]), torch.tensor([[[0.0, 5.0], [2.0, 0.0]]])
    # token 0: |(3,-1)| / 5, token 1: 1 / 2
    expected = ((10**0.5) / 5 + 0.5) / 2
    assert relative_representation_distance(hidden, orig, torch.tensor([[1, 1]])).item() == pytest.approx(expected)


# --- through the trainer -------------------------------------------------------------------------

CIR_TINY = dict(
    loss_layers=[0, 1], retain_layer=2, act_components=2, grad_components=2, pca_niter=4, step_norm=0.5,
    retaining_rate=1e-3, per_device_train_batch_size=8, disruption_budget=None, eval_strategy="no", eval_on_start=False,
)  # fmt: skip


def cir_trainer(model, tokenizer, forget, retain, tmp_path, **overrides):
    args = unlearn_config(tmp_path, config_class=CIRConfig, **{**CIR_TINY, **overrides})
    return UnlearnTrainer(model, args, forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer)


def test_epoch_zero_collects_statistics_only(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    initial = copy.deepcopy(model.state_dict())
    trainer = cir_trainer(model, tokenizer, forget_dataset, retain_dataset, tmp_path, max_steps=3)  # 24 facts / 8: one epoch
    trainer.train()
    assert all(torch.equal(t, initial[n]) for n, t in model.state_dict().items()), "epoch 0 changes nothing"
    method = trainer.method
    assert method.epochs_done == 1 and set(method.act_bases) == {n.removesuffix(".weight") for n in method.target_names}
    assert all(b.shape[0] == 3 for b in method.act_bases.values()), "mean + 2 components"


def test_later_epochs_change_only_target_weights(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    initial = copy.deepcopy(model.state_dict())
    trainer = cir_trainer(model, tokenizer, forget_dataset, retain_dataset, tmp_path, max_steps=6)
    trainer.train()
    changed = {n for n, t in model.state_dict().items() if not torch.equal(t, initial[n])}
    assert changed == {n for n in initial if any(m in n for m in ("gate_proj", "up_proj", "down_proj"))}
    logs = [e for e in trainer.state.log_history if "unlearning_grad_norm" in e]
    assert len(logs) == 3 and all(torch.isfinite(torch.tensor(e["retain_loss"])) for e in logs)


def test_update_is_collapsed_and_normalised(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    """Without the retain step, the epoch-1 update of each module has no component along its bases."""
    trainer = cir_trainer(model, tokenizer, forget_dataset, retain_dataset, tmp_path, max_steps=4, retaining_rate=0.0)
    method, steps = trainer.method, []
    original_step = method.training_step

    def recording_step(trainer_, model_, inputs):
        bases = (method.act_bases, method.grad_bases)  # the ones this step uses
        loss = original_step(trainer_, model_, inputs)
        steps.append((bases, {n: model.get_parameter(n).grad for n in method.target_names}))
        return loss

    method.training_step = recording_step
    trainer.train()
    assert all(g is None for g in steps[2][1].values()), "epoch 0 (steps 0-2) writes no update"
    (act_bases, grad_bases), update = steps[3]  # the first step of epoch 1
    assert torch.sqrt(sum((u.float() ** 2).sum() for u in update.values())).item() == pytest.approx(0.5, rel=1e-4)
    for name, u in update.items():
        module = name.removesuffix(".weight")
        assert (u @ act_bases[module].T).abs().max() < 1e-5, "rows of the update avoid the activation bases"
        assert (grad_bases[module] @ u).abs().max() < 1e-5, "columns avoid the gradient bases"


def test_resume_mid_way_equals_uninterrupted(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    twin = copy.deepcopy(model)
    settings = dict(max_steps=8, save_strategy="steps", save_steps=5)
    straight = cir_trainer(model, tokenizer, forget_dataset, retain_dataset, tmp_path / "a", **settings)
    straight.train()
    checkpoint = tmp_path / "a" / "checkpoint-5"  # mid epoch 1: statistics half collected
    assert (checkpoint / METHOD_STATE_NAME).is_file()
    resumed = cir_trainer(twin, tokenizer, forget_dataset, retain_dataset, tmp_path / "b", **settings)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), name
    assert straight.method.epochs_done == resumed.method.epochs_done == 3  # the last, partial epoch ends too


def test_disruption_budget_stops_and_keeps_last_model_within(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    settings = dict(
        max_steps=30, disruption_budget=1e-6, eval_strategy="epoch", eval_on_start=True, step_norm=2.0, retaining_rate=0.0
    )  # fmt: skip
    trainer = UnlearnTrainer(
        model, unlearn_config(tmp_path, config_class=CIRConfig, **{**CIR_TINY, **settings}),
        forget_dataset=forget_dataset, retain_dataset=retain_dataset, processing_class=tokenizer,
        eval_dataset={"retain": retain_dataset},
    )  # fmt: skip
    trainer.train()
    budget = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, DisruptionBudgetCallback))
    assert budget.exceeded_at is not None and trainer.state.global_step < 30, "stopped early"
    assert (tmp_path / "first_beyond_budget").is_dir() and (tmp_path / "last_within_budget").is_dir()
    # The model in hand is the last one within budget (here: the untouched one after epoch 0).
    assert trainer.evaluate()["eval_retain_loss"] <= budget.start * (1 + 1e-6)


def test_resume_keeps_the_disruption_budget_start(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    """The budget is measured from the run's first evaluation, not from the resumed model's."""
    twin = copy.deepcopy(model)
    settings = dict(max_steps=8, save_strategy="steps", save_steps=5, disruption_budget=10.0, eval_strategy="epoch", eval_on_start=True)

    def budget_trainer(model_, output_dir):
        args = unlearn_config(output_dir, config_class=CIRConfig, **{**CIR_TINY, **settings})
        trainer = UnlearnTrainer(model_, args, forget_dataset=forget_dataset, retain_dataset=retain_dataset,
                                 processing_class=tokenizer, eval_dataset={"retain": retain_dataset})  # fmt: skip
        return trainer, next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, DisruptionBudgetCallback))

    straight, straight_budget = budget_trainer(model, tmp_path / "a")
    straight.train()
    resumed, resumed_budget = budget_trainer(twin, tmp_path / "b")
    resumed.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-5"))
    assert resumed_budget.start == straight_budget.start
    # The resumed model's own loss differs from the start: without the saved state it would become the start.
    (at_resume,) = [e["eval_retain_loss"] for e in resumed.state.log_history if e["step"] == 5 and "eval_retain_loss" in e]
    assert at_resume != straight_budget.start
    assert resumed_budget.within_budget["step"] == straight_budget.within_budget["step"] == 8


def test_cir_needs_a_retain_eval_set_for_its_budget(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    args = unlearn_config(tmp_path, config_class=CIRConfig, **{**CIR_TINY, "disruption_budget": 0.001, "eval_strategy": "epoch"})
    with pytest.raises(ValueError, match='pass eval_dataset=\\{"retain"'):
        UnlearnTrainer(model, args, forget_dataset=forget_dataset, retain_dataset=retain_dataset, processing_class=tokenizer)


def test_cir_with_a_registry_loss(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    initial = copy.deepcopy(model.state_dict())
    cir_trainer(model, tokenizer, forget_dataset, retain_dataset, tmp_path, max_steps=4, cir_loss="neg_cross_entropy").train()
    assert any(not torch.equal(t, initial[n]) for n, t in model.state_dict().items())
