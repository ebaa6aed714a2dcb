"""CIR: the collapse math alone, then the method through UnlearnTrainer."""

import copy

import pytest
import torch
from conftest import tiny_llama, unlearn_config
from datasets import Dataset

from hf_unlearn import CIRConfig, DisruptionBudgetCallback, UnlearnTrainer
from hf_unlearn.data import LMCollator, fact_sentences, facts
from hf_unlearn.gradients import collapse, orthonormal_basis, principal_directions, rebuild_weight_grad
from hf_unlearn.losses import mlp_breaking_loss, relative_representation_distance
from hf_unlearn.methods.cir import cir_token_masks
from hf_unlearn.unlearn_trainer import METHOD_STATE_NAME

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


def test_orthogonal_collapse_leaves_nothing_along_the_basis():
    torch.manual_seed(1)
    data = torch.randn(200, 16) + 3.0  # a strong mean direction
    directions = principal_directions(data, num_components=4, niter=8)
    assert directions.shape == (5, 16) and torch.allclose(directions.norm(dim=1), torch.ones(5), atol=1e-5)
    assert (directions[0] @ directions[1:].T).abs().max() > 1e-3, "the mean is not orthogonalised against the components"
    basis = orthonormal_basis(directions)
    assert torch.allclose(basis @ basis.T, torch.eye(5), atol=1e-5), "orthonormal rows"
    collapsed = collapse(data, basis)
    assert (collapsed @ directions.T).abs().max() < 1e-4
    # What is orthogonal to the basis is untouched.
    orthogonal = collapse(torch.randn(3, 16), basis)
    assert torch.allclose(collapse(orthogonal, basis), orthogonal, atol=1e-5)


def test_sequential_collapse_subtracts_each_direction_in_turn():
    s = 0.5**0.5
    directions = torch.tensor([[1.0, 0.0], [s, s]])  # unit, not orthogonal
    vector = torch.tensor([[2.0, 3.0]])
    # First along (1, 0): (0, 3); then along (s, s): (0, 3) - 3s * (s, s) = (-1.5, 1.5).
    assert torch.allclose(collapse(vector, directions, sequential=True), torch.tensor([[-1.5, 1.5]]))
    # The exact projection removes the whole plane.
    assert torch.allclose(collapse(vector, orthonormal_basis(directions)), torch.zeros(1, 2), atol=1e-6)


def test_mlp_breaking_and_relative_distance_by_hand():
    out = [torch.tensor([[1.0, 0.0], [0.0, 1.0]])]
    original = [torch.tensor([[2.0, 0.0], [0.0, 2.0]])]  # mean norm 2 -> scale 4
    # dot products 2 and 2, / 4 -> 0.5 each
    assert mlp_breaking_loss(out, original).item() == pytest.approx(0.5)
    assert mlp_breaking_loss([-out[0]], original).item() == 0.0, "clipped at the floor 0"
    hidden, orig = torch.tensor([[[3.0, 4.0], [1.0, 0.0]]]), torch.tensor([[[0.0, 5.0], [2.0, 0.0]]])
    # The authors' reduction: mean distance (|(3,-1)| + 1) / 2 over mean original norm (5 + 2) / 2.
    expected = (10**0.5 + 1) / 7
    assert relative_representation_distance(hidden, orig, torch.tensor([[1, 1]])).item() == pytest.approx(expected)
    assert relative_representation_distance(hidden, orig, torch.tensor([[1, 1]]), torch.tensor(2.0)).item() == pytest.approx(
        (10**0.5 + 1) / 2 / 2
    ), "a given denominator (the mean over every process's tokens) replaces the local one"


def test_token_masks_keep_every_real_token_and_drop_each_sequences_last_from_statistics():
    input_ids = torch.tensor([[7, 4, 5, 6], [7, 8, 9, 0], [3, 4, 0, 0]])
    attention_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0]])
    loss, stats = cir_token_masks(input_ids, attention_mask, cut_off_tokens=None, bos_token_id=7)
    # A leading BOS (id 7) is left out where there is one; padding never counts.
    assert loss.int().tolist() == [[0, 1, 1, 1], [0, 1, 1, 0], [1, 1, 0, 0]]
    assert stats.int().tolist() == [[0, 1, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0]]
    loss, stats = cir_token_masks(input_ids, attention_mask, cut_off_tokens=1, bos_token_id=None)
    assert loss.int().tolist() == [[0, 1, 1, 1], [0, 1, 1, 0], [0, 1, 0, 0]]
    assert cir_token_masks(input_ids, attention_mask, None, None)[0].equal(attention_mask.bool())


def test_selected_tokens_on_a_fact_batch_are_the_authors_count(tokenizer):
    """On fact-stating sentences, statistics use every token of each sentence but the first
    ``cut_off_tokens`` and the last: the authors' ``attention_mask[:, cut_off_tokens:-1]`` on each
    sentence alone (their slice of a padded batch would also keep the last token of the shorter ones)."""
    capitals = facts([{"prompt": "The capital of Peru is", "answer": "Lima", "phrasings": ["Lima is the capital of Peru.", "Peru's capital city is Lima."]},
                      {"prompt": "The capital of Chad is", "answer": "N'Djamena"}])  # fmt: skip
    sentences = fact_sentences(capitals, num_phrasings=3)
    assert sentences["text"] == ["Lima is the capital of Peru.", "Peru's capital city is Lima.", "The capital of Chad is N'Djamena"]
    encoded = [tokenizer(text) for text in sentences["text"]]
    batch = LMCollator(tokenizer.pad_token_id)([{"input_ids": e["input_ids"]} for e in encoded])
    for cut in (0, 1):
        _, stats = cir_token_masks(batch["input_ids"], batch["attention_mask"], cut, tokenizer.bos_token_id)
        authors = sum(int(torch.tensor([e["attention_mask"]])[:, cut:-1].sum()) for e in encoded)
        assert int(stats.sum()) == authors == sum(len(e["input_ids"]) - cut - 1 for e in encoded)


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
    trainer = cir_trainer(model, tokenizer, forget_dataset, retain_dataset, tmp_path, max_steps=3)  # 24 texts / 8: one epoch
    trainer.train()
    assert all(torch.equal(t, initial[n]) for n, t in model.state_dict().items()), "epoch 0 changes nothing"
    method = trainer.procedure
    assert method.act_bases is None and method.stats_epoch == 0
    assert set(method.act_stats) == {n.removesuffix(".weight") for n in method.target_names}
    assert all(len(chunks) == 3 for chunks in method.act_stats.values()), "one chunk of rows per step"


def test_later_epochs_change_only_target_weights(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    initial = copy.deepcopy(model.state_dict())
    trainer = cir_trainer(model, tokenizer, forget_dataset, retain_dataset, tmp_path, max_steps=6)
    trainer.train()
    changed = {n for n, t in model.state_dict().items() if not torch.equal(t, initial[n])}
    assert changed == {n for n in initial if any(m in n for m in ("gate_proj", "up_proj", "down_proj"))}
    logs = [e for e in trainer.state.log_history if "unlearning_grad_norm" in e]
    assert len(logs) == 3 and all(torch.isfinite(torch.tensor(e["retain_loss"])) for e in logs)
    method = trainer.procedure
    assert method.epochs_done == 1 and set(method.act_bases) == {n.removesuffix(".weight") for n in method.target_names}
    assert all(b.shape[0] == 3 for b in method.act_bases.values()), "mean + 2 components"


def test_update_is_collapsed_and_normalised(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    """Without the retain step, the epoch-1 update of each module has no component along its bases."""
    trainer = cir_trainer(model, tokenizer, forget_dataset, retain_dataset, tmp_path, max_steps=4, retaining_rate=0.0, projection="orthogonal")
    method, steps = trainer.procedure, []
    original_step = method.training_step

    def recording_step(trainer_, model_, inputs):
        loss = original_step(trainer_, model_, inputs)
        bases = (method.act_bases, method.grad_bases)  # the ones this step used (made at its start)
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


@pytest.mark.parametrize("checkpoint_step", [5, 6], ids=["mid_epoch", "last_step_of_an_epoch"])
def test_resume_equals_uninterrupted(model, tokenizer, forget_dataset, retain_dataset, tmp_path, checkpoint_step):
    """3 steps per epoch: checkpoint 5 holds half an epoch's statistics, checkpoint 6 a whole epoch's,
    whose bases the next step must compute. The resumed model starts from other weights, so a run
    that ignored the checkpoint (or part of the method's state) would end elsewhere."""
    settings = dict(max_steps=9, save_strategy="steps", save_steps=1)
    straight = cir_trainer(model, tokenizer, forget_dataset, retain_dataset, tmp_path / "a", **settings)
    straight.train()
    checkpoint = tmp_path / "a" / f"checkpoint-{checkpoint_step}"
    assert (checkpoint / METHOD_STATE_NAME).is_file()
    other = tiny_llama(len(tokenizer), seed=7)
    resumed = cir_trainer(other, tokenizer, forget_dataset, retain_dataset, tmp_path / "b", **settings)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), name
    assert straight.procedure.epochs_done == resumed.procedure.epochs_done == 2


def test_disruption_budget_stops_and_keeps_last_model_within(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    # Gradient ascent on the forget set, with the budget watching the loss on that same text: it must rise.
    settings = dict(
        max_steps=30, disruption_budget=1e-6, eval_strategy="epoch", eval_on_start=True, step_norm=2.0, retaining_rate=0.0,
        cir_loss="neg_cross_entropy",
    )  # fmt: skip
    trainer = UnlearnTrainer(
        model, unlearn_config(tmp_path, config_class=CIRConfig, **{**CIR_TINY, **settings}),
        forget_dataset=forget_dataset, retain_dataset=retain_dataset, processing_class=tokenizer,
        eval_dataset={"retain": forget_dataset},
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


def test_cir_needs_a_retain_eval_set_for_its_default_budget(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    default_budget = {k: v for k, v in CIR_TINY.items() if k != "disruption_budget"}
    args = unlearn_config(tmp_path, config_class=CIRConfig, **{**default_budget, "eval_strategy": "epoch"})
    assert args.disruption_budget == 0.001 and args.disruption_unit == "relative", "the authors' +0.1 %"
    with pytest.raises(ValueError, match='pass eval_dataset=\\{"retain"'):
        UnlearnTrainer(model, args, forget_dataset=forget_dataset, retain_dataset=retain_dataset, processing_class=tokenizer)


def test_cir_with_a_registry_loss(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    initial = copy.deepcopy(model.state_dict())
    cir_trainer(model, tokenizer, forget_dataset, retain_dataset, tmp_path, max_steps=4, cir_loss="neg_cross_entropy").train()
    assert any(not torch.equal(t, initial[n]) for n, t in model.state_dict().items())


# --- against an independent reference of the authors' algorithm ----------------------------------


def reference_cir_epochs(model, batches_per_epoch, cfg):
    """CIR as its authors run it (filyp/unlearning, docs/design.md §4), written with plain autograd and hooks:
    every real token in the loss, statistics on each sentence's tokens but the last, sequential
    projection (normalised mean first, then the principal components), the update normalised to
    the step norm, then a retain step on mean ||h - h0|| / mean ||h0||."""
    layers = model.model.layers
    targets = [(f"model.layers.{i}.mlp.{m}", getattr(layers[i].mlp, m)) for i in range(2) for m in ("gate_proj", "up_proj", "down_proj")]
    original = {name: module.weight.detach().clone() for name, module in targets}

    def block_output(batch):  # hidden_states[k] is block k-1's output (the last entry of HF's tuple is normed)
        out = []
        hook = layers[cfg["retain_layer"] - 1].register_forward_hook(lambda m, a, o: out.append(o[0] if isinstance(o, tuple) else o))
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        hook.remove()
        return out[0]

    def run(batch, weights=None):
        saved = {}
        if weights is not None:
            for name, module in targets:
                saved[name] = module.weight.data.clone()
                module.weight.data.copy_(weights[name])
        captured, mlp_out = {}, {}
        hooks = [module.register_forward_hook(lambda m, a, o, n=name: captured.__setitem__(n, (a[0], o))) for name, module in targets]
        hooks += [layers[i].mlp.register_forward_hook(lambda m, a, o, i=i: mlp_out.__setitem__(i, o)) for i in range(2)]
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        for hook in hooks:
            hook.remove()
        for name, module in targets:
            if name in saved:
                module.weight.data.copy_(saved[name])
        return captured, mlp_out

    directions = None
    for batches in batches_per_epoch:
        collected = {name: ([], []) for name, _ in targets}
        for batch in batches:
            forget, retain = batch["forget"], batch["retain"]
            mask = forget["attention_mask"].bool()
            with torch.no_grad():
                _, mlp_orig = run(forget, original)
            captured, mlp_out = run(forget)
            terms = []
            for i in range(2):
                o, o0 = mlp_out[i][mask], mlp_orig[i][mask]
                terms.append(((o * o0).sum(-1) / o0.norm(dim=-1).mean() ** 2).clamp(min=0).mean())
            loss = torch.stack(terms).mean()
            outputs = [captured[name][1] for name, _ in targets]
            grads = torch.autograd.grad(loss, outputs)
            lengths = forget["attention_mask"].sum(1)
            stat = mask.clone()
            stat[torch.arange(len(lengths)), lengths - 1] = False  # each sentence's last token
            acts = {name: captured[name][0].detach()[stat] for name, _ in targets}
            gs = {name: g[stat] for (name, _), g in zip(targets, grads)}
            for name, _ in targets:
                collected[name][0].append(acts[name])
                collected[name][1].append(gs[name])
            if directions is None:
                continue
            update = {}
            for name, _ in targets:
                a, g = acts[name].clone(), gs[name].clone()
                for d in directions[name][0]:
                    a = a - (a @ d)[:, None] * d
                for d in directions[name][1]:
                    g = g - (g @ d)[:, None] * d
                update[name] = g.T @ a
            norm = torch.sqrt(sum((u**2).sum() for u in update.values()))
            update = {name: u * cfg["step_norm"] / norm for name, u in update.items()}
            after = {name: module.weight.detach() - update[name] for name, module in targets}
            rmask = retain["attention_mask"].bool()
            with torch.no_grad():
                current = {name: module.weight.detach().clone() for name, module in targets}
                for name, module in targets:
                    module.weight.copy_(original[name])
                h0 = block_output(retain)
                for name, module in targets:
                    module.weight.copy_(current[name])
            leaves = {name: w.clone().requires_grad_() for name, w in after.items()}
            saved = {name: module.weight for name, module in targets}
            for name, module in targets:  # differentiate with respect to the weights after the update
                del module.weight
                module.weight = leaves[name]
            h = block_output(retain)
            retain_loss = (h - h0).norm(dim=-1)[rmask].mean() / h0.norm(dim=-1)[rmask].mean()
            retain_grads = torch.autograd.grad(retain_loss, list(leaves.values()))
            for (name, module), g in zip(targets, retain_grads):
                del module.weight
                module.weight = saved[name]
                with torch.no_grad():
                    module.weight.copy_(after[name] - cfg["retaining_rate"] * g)
        # Bases for the next epoch: the normalised mean, then the principal components (centred, seeded).
        directions = {}
        for name, (acts, gs) in collected.items():
            pair = []
            for rows, k in ((torch.cat(acts), cfg["act_components"]), (torch.cat(gs), cfg["grad_components"])):
                mean = rows.mean(0)
                torch.manual_seed(cfg["seed"])
                _, _, v = torch.pca_lowrank(rows, q=k, center=True, niter=cfg["pca_niter"])
                pair.append(torch.cat([(mean / mean.norm())[None], v.T]))
            directions[name] = pair
    return {name: module.weight.detach().clone() for name, module in targets}


def test_one_cir_epoch_matches_the_authors_algorithm(tokenizer, retain_dataset, tmp_path):
    # Fact-stating sentences of unequal lengths, so padding and each sentence's last token matter.
    sentences = [f"{city} is the capital of land {i}." for i, city in enumerate(["Lima", "Oslo", "Quito", "Bern", "Rome", "Kyiv", "Riga", "Doha"] * 2)]
    forget = Dataset.from_dict({"text": sentences})
    model = tiny_llama(len(tokenizer), seed=3)
    initial = copy.deepcopy(model)
    trainer = cir_trainer(model, tokenizer, forget, retain_dataset, tmp_path, max_steps=4, seed=0, projection="sequential", retaining_rate=0.5)
    batches, method_step = [], trainer.procedure.training_step

    def recording_step(step, model_, inputs):
        batches.append(copy.deepcopy(inputs))
        return method_step(step, model_, inputs)

    trainer.procedure.training_step = recording_step
    trainer.train()  # 16 sentences / 8: two steps per epoch, epoch 0 collects, epoch 1 updates
    assert len(batches) == 4
    moved = max((p - initial.get_parameter(n)).abs().max().item() for n, p in model.named_parameters() if "mlp" in n)
    assert moved > 1e-3, "the epoch changed the weights, so the comparison means something"
    cfg = {name: getattr(trainer.args, name) for name in ("step_norm", "retaining_rate", "retain_layer", "act_components", "grad_components", "pca_niter", "seed")}
    expected = reference_cir_epochs(initial, [batches[:2], batches[2:]], cfg)
    differences = {name: (model.get_parameter(f"{name}.weight") - want).abs().max().item() for name, want in expected.items()}
    assert max(differences.values()) <= 1e-5, differences
