"""MUDMAN through UnlearnTrainer against a plain reference loop written from docs/design.md §3."""

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import unlearn_config

from hf_unlearn import UnlearnTrainer

TARGETS = ["model.layers.0.mlp.gate_proj.weight", "model.layers.1.mlp.gate_proj.weight"]


def reference_ce(logits, labels):
    logits, labels = logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1)
    return F.cross_entropy(logits.float(), labels, ignore_index=-100)


def reference_neg_entropy(logits, labels):
    logits, labels = logits[:, :-1], labels[:, 1:]
    logp = logits.float().log_softmax(-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return -entropy[labels != -100].mean()


def reference_mudman(model, batches, cfg, unlearning_loss):
    """docs/design.md §3 step by step, with the weights swapped in place and plain autograd."""
    params = [model.get_parameter(n) for n in TARGETS]
    base = [p.detach().clone() for p in params]
    retain_acc = [torch.zeros_like(p) for p in params]
    adversary = None
    numel = sum(p.numel() for p in params)

    def losses_at(weights, batch, fns):
        with torch.no_grad():
            for p, w in zip(params, weights):
                p.copy_(w)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        values = [fn(logits, batch["labels"]) for fn in fns]
        return [torch.autograd.grad(v, params, retain_graph=True) for v in values]

    for loop, batch in enumerate(batches):
        if cfg["meta_learning"] and loop % cfg["fork_every_n_loops"] == 0:
            adversary = [b.clone() for b in base]
        (g_r,) = losses_at(base, batch["retain"], [reference_ce])
        retain_acc = [cfg["retain_momentum"] * a + (1 - cfg["retain_momentum"]) * g for a, g in zip(retain_acc, g_r)]
        base = [b - cfg["retaining_rate"] * a for b, a in zip(base, retain_acc)]
        at = adversary if cfg["meta_learning"] else base
        g_a, g_u = losses_at(at, batch["forget"], [reference_ce, unlearning_loss])
        if cfg["meta_learning"]:
            adversary = [a - cfg["adv_lr"] * g for a, g in zip(adversary, g_a)]
            adversary = [cfg["adv_decay"] * a + (1 - cfg["adv_decay"]) * b for a, b in zip(adversary, base)]
        if cfg["normalize_unlearning_grad"]:
            norm = torch.sqrt(sum((g**2).sum() for g in g_u))
            g_u = [g * numel**0.5 / norm for g in g_u]
        if cfg["disruption_masking"]:
            g_u = [g * (torch.sign(g) == torch.sign(a)) for g, a in zip(g_u, retain_acc)]
        base = [b - cfg["unlearning_rate"] * g for b, g in zip(base, g_u)]
    return base


DEFAULTS = dict(
    unlearning_rate=0.02,
    retaining_rate=0.05,
    retain_momentum=0.8,
    adv_lr=0.5,
    adv_decay=0.7,
    fork_every_n_loops=2,
    meta_learning=True,
    disruption_masking=True,
    normalize_unlearning_grad=True,
)


def run_trainer(model, tokenizer, forget_dataset, retain_dataset, tmp_path, **overrides):
    """Train 5 loops (forks at loops 0, 2, 4); return the trainer and the paired batches it used."""
    cfg = {**DEFAULTS, **overrides}
    adversary = ("adv_lr", "adv_decay", "fork_every_n_loops")  # settings nobody reads without meta-learning
    settings = {k: v for k, v in cfg.items() if cfg["meta_learning"] or k not in adversary}
    args = unlearn_config(tmp_path, max_steps=5, target_modules=["gate_proj"], **settings)
    trainer = UnlearnTrainer(model, args, forget_dataset=forget_dataset, retain_dataset=retain_dataset, processing_class=tokenizer)
    batches = []
    method_step = trainer.procedure.training_step

    def recording_step(step, model_, inputs):
        batches.append(copy.deepcopy(inputs))
        return method_step(step, model_, inputs)

    trainer.procedure.training_step = recording_step
    trainer.train()
    return trainer, batches, cfg


SWITCHES = {
    "full": {},
    "no_masking": {"disruption_masking": False},
    "no_normalization": {"normalize_unlearning_grad": False, "unlearning_rate": 0.5},
    "no_meta_learning": {"meta_learning": False},
    "no_adversary_decay": {"adv_decay": 1.0},
    "no_retain_momentum": {"retain_momentum": 0.0},
}


@pytest.mark.parametrize("switches", SWITCHES.values(), ids=SWITCHES.keys())
@pytest.mark.parametrize("loss", ["neg_cross_entropy", "neg_entropy"])
def test_matches_reference_loop(model, tokenizer, forget_dataset, retain_dataset, tmp_path, switches, loss):
    initial = copy.deepcopy(model)
    trainer, batches, cfg = run_trainer(
        model, tokenizer, forget_dataset, retain_dataset, tmp_path, unlearning_loss=loss, **switches
    )
    assert len(batches) == 5
    reference_loss = {"neg_cross_entropy": lambda lg, lb: -reference_ce(lg, lb), "neg_entropy": reference_neg_entropy}
    expected = reference_mudman(initial, batches, cfg, reference_loss[loss])
    for name, want in zip(TARGETS, expected):
        got = model.get_parameter(name)
        assert torch.allclose(got, want, atol=2e-6, rtol=1e-5), f"{name}: max diff {(got - want).abs().max()}"


def test_only_target_weights_change(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    initial = copy.deepcopy(model.state_dict())
    run_trainer(model, tokenizer, forget_dataset, retain_dataset, tmp_path)
    for name, tensor in model.state_dict().items():
        if name in TARGETS:
            assert not torch.equal(tensor, initial[name]), f"target {name} did not change"
        else:
            assert torch.equal(tensor, initial[name]), f"non-target {name} changed"


@pytest.mark.parametrize("switch", [k for k in SWITCHES if k != "full"])
def test_each_switch_changes_the_result(model, tokenizer, forget_dataset, retain_dataset, tmp_path, switch):
    initial = copy.deepcopy(model)
    run_trainer(model, tokenizer, forget_dataset, retain_dataset, tmp_path / "full")
    run_trainer(initial, tokenizer, forget_dataset, retain_dataset, tmp_path / switch, **SWITCHES[switch])
    assert not torch.allclose(model.get_parameter(TARGETS[0]), initial.get_parameter(TARGETS[0]), atol=1e-6)


def one_step_update(model, tokenizer, forget_dataset, retain_dataset, tmp_path, **overrides):
    """Weights before and after one loop, and the retain EMA the update was masked with."""
    before = [model.get_parameter(n).detach().clone() for n in TARGETS]
    args = unlearn_config(tmp_path, max_steps=1, target_modules=["gate_proj"], **{**DEFAULTS, **overrides})
    trainer = UnlearnTrainer(model, args, forget_dataset=forget_dataset, retain_dataset=retain_dataset, processing_class=tokenizer)
    trainer.train()
    deltas = [model.get_parameter(n).detach() - b for n, b in zip(TARGETS, before)]
    return deltas, trainer.procedure.retain.ema


def test_masking_off_updates_opposite_sign_elements(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    twin = copy.deepcopy(model)
    rr = DEFAULTS["retaining_rate"]
    masked, acc = one_step_update(model, tokenizer, forget_dataset, retain_dataset, tmp_path / "on")
    unmasked, acc_off = one_step_update(
        twin, tokenizer, forget_dataset, retain_dataset, tmp_path / "off", disruption_masking=False
    )
    for d_on, d_off, a, a_off in zip(masked, unmasked, acc, acc_off):
        assert torch.equal(a, a_off)
        unlearning_on, unlearning_off = d_on + rr * a, d_off + rr * a  # the unlearning part of each update
        # Unlearning moves weights along -g_u: it kept the same sign as the retain EMA where it survived.
        opposite = torch.sign(-unlearning_off) != torch.sign(a)
        assert opposite.any()
        assert unlearning_on[opposite].abs().max() < 1e-7, "masking on: opposite-sign elements get no unlearning step"
        assert (unlearning_off[opposite].abs() > 1e-7).float().mean() > 0.99, "masking off: they are updated"
        same = ~opposite
        assert torch.allclose(unlearning_on[same], unlearning_off[same], atol=1e-7)


def test_meta_learning_off_takes_gradient_at_base(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    trainer, _, _ = run_trainer(model, tokenizer, forget_dataset, retain_dataset, tmp_path, meta_learning=False)
    assert trainer.procedure.adversary is None  # never forked: the unlearning gradient was taken at the base
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert "adversary_forget_loss" not in logged[0]


def test_normalization_off_uses_raw_gradient_scale(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    twin = copy.deepcopy(model)
    settings = dict(disruption_masking=False, retaining_rate=0.0)  # the update is the unlearning step alone
    normalized, _ = one_step_update(model, tokenizer, forget_dataset, retain_dataset, tmp_path / "a", **settings)
    raw, _ = one_step_update(
        twin, tokenizer, forget_dataset, retain_dataset, tmp_path / "b", normalize_unlearning_grad=False, **settings
    )
    numel = sum(d.numel() for d in normalized)
    norm_normalized = torch.sqrt(sum((d**2).sum() for d in normalized))
    assert norm_normalized.item() == pytest.approx(DEFAULTS["unlearning_rate"] * numel**0.5, rel=1e-4)
    # Same direction, different length: the raw step is unlearning_rate * the gradient itself.
    cosine = sum((a * b).sum() for a, b in zip(normalized, raw)) / (
        norm_normalized * torch.sqrt(sum((d**2).sum() for d in raw))
    )
    assert cosine.item() == pytest.approx(1.0, abs=1e-5)
    assert torch.sqrt(sum((d**2).sum() for d in raw)).item() != pytest.approx(norm_normalized.item(), rel=1e-2)
