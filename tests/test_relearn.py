import copy

import pytest
import torch
from conftest import tiny_llama

from hf_unlearn import RelearnAttackConfig, RelearnAttackTrainer


def attack_config(tmp_path, **overrides):
    settings = dict(
        output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=4, eval_steps=2,
        learning_rate=0.05, save_strategy="no", report_to="none", disable_tqdm=True, seed=0,
    )  # fmt: skip
    return RelearnAttackConfig(**{**settings, **overrides})


def test_attack_curve_and_best_point(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    initial = copy.deepcopy(model.state_dict())
    trainer = RelearnAttackTrainer(
        model,
        attack_config(tmp_path),
        attack_dataset=forget_dataset.select(range(12)),
        eval_dataset={"forget": forget_dataset.select(range(12, 24)), "retain": retain_dataset},
        processing_class=tokenizer,
    )
    trainer.train()
    curve = trainer.attack_curve()
    assert [point["step"] for point in curve] == [0, 2, 4, 6]  # eval_on_start, then every eval_steps
    assert all({"forget_loss", "retain_loss"} <= set(point) for point in curve)
    assert curve[-1]["forget_loss"] < curve[0]["forget_loss"], "fine-tuning on attack chunks lowers held-out loss"
    best = trainer.best_point()
    assert best["forget_loss"] == min(point["forget_loss"] for point in curve)
    # All parameters are attacked by default.
    assert all(not torch.equal(t, initial[n]) for n, t in model.state_dict().items() if "rotary" not in n)


def test_attack_modules_restrict_what_changes(model, tokenizer, forget_dataset, tmp_path):
    initial = copy.deepcopy(model.state_dict())
    trainer = RelearnAttackTrainer(
        model,
        attack_config(tmp_path, attack_modules=["up_proj"], max_steps=2),
        attack_dataset=forget_dataset,
        eval_dataset={"forget": forget_dataset},
        processing_class=tokenizer,
    )
    trainer.train()
    changed = {n for n, t in model.state_dict().items() if not torch.equal(t, initial[n])}
    assert changed == {"model.layers.0.mlp.up_proj.weight", "model.layers.1.mlp.up_proj.weight"}


def test_alternating_retain_steps(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    """With a retain set each step is a forget SGD step followed by a retain SGD step."""
    twin = copy.deepcopy(model)
    lr = 0.05
    args = attack_config(tmp_path, max_steps=1, learning_rate=lr, eval_on_start=False, eval_strategy="no", interleave_retain=True)
    trainer = RelearnAttackTrainer(
        model, args, attack_dataset=forget_dataset, eval_dataset={"forget": forget_dataset},
        retain_dataset=retain_dataset, processing_class=tokenizer,
    )  # fmt: skip
    forget_batch = next(iter(trainer.get_train_dataloader()))
    retain_batch = trainer.retain_stream.batch(0)
    trainer.train()

    from hf_unlearn.forward import lm_loss

    sgd = torch.optim.SGD(twin.parameters(), lr=lr)
    for batch in (forget_batch, retain_batch):
        sgd.zero_grad()
        lm_loss(twin, batch)[0].backward()
        sgd.step()
    for (name, got), want in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.allclose(got, want, atol=1e-6), name


def test_eval_dataset_must_name_forget(model, tokenizer, forget_dataset, tmp_path):
    with pytest.raises(ValueError, match='held-out "forget" split'):
        RelearnAttackTrainer(model, attack_config(tmp_path), attack_dataset=forget_dataset, eval_dataset=forget_dataset, processing_class=tokenizer)


def test_best_point_before_any_evaluation(tokenizer, forget_dataset, tmp_path):
    trainer = RelearnAttackTrainer(
        tiny_llama(len(tokenizer)), attack_config(tmp_path), attack_dataset=forget_dataset,
        eval_dataset={"forget": forget_dataset}, processing_class=tokenizer,
    )  # fmt: skip
    with pytest.raises(ValueError, match="no evaluation of .forget_loss. has run yet"):
        trainer.best_point()


def test_divergence_rules_and_the_best_point_skip_broken_models():
    """A point is diverged when a metric is NaN/inf or the retain loss passed retain_ratio x its start; the best
    point never is one, even when its forget metric looks best."""
    from hf_unlearn.attacks.relearn_trainer import best_of, diverged

    start = {"step": 0, "forget_loss": 5.0, "retain_loss": 2.0}
    assert diverged({"step": 10, "forget_loss": 1.0, "retain_loss": 3.1}, start, 1.5), "retain loss 1.55x its start"
    assert not diverged({"step": 10, "forget_loss": 1.0, "retain_loss": 2.9}, start, 1.5)
    assert diverged({"step": 10, "forget_loss": float("nan"), "retain_loss": 2.0}, start, 1.5)
    curve = [start, {"step": 10, "forget_loss": 3.0, "retain_loss": 2.1}, {"step": 20, "forget_loss": 0.5, "retain_loss": 9.0, "diverged": True}]
    assert best_of(curve, "eval_forget_loss", greater_is_better=False)["step"] == 10
