"""UNDO (hf_unlearn.undo): the noise, the distillation loss, the trainer's distillation, stopping and resuming."""

from __future__ import annotations

import copy
import json
import math
import os

import pytest
import torch
from conftest import FORGET_TEXTS, RETAIN_TEXTS, char_tokenizer, full_batch, tiny_llama
from datasets import Dataset
from transformers import AutoModelForCausalLM, TrainerCallback

from hf_unlearn import UndoConfig, UndoTrainer
from hf_unlearn.forward import lm_loss, lm_outputs
from hf_unlearn.model_card import UnlearningInfo, unlearned_from
from hf_unlearn.undo import distillation_loss, noise_weights_, pretraining_tokens, within_tolerance


def undo_config(output_dir, **overrides) -> UndoConfig:
    settings = dict(
        output_dir=str(output_dir), per_device_train_batch_size=4, max_steps=4, warmup_steps=0, learning_rate=1e-2,
        logging_steps=1, eval_strategy="no", distill_tolerance=None, save_strategy="no", report_to="none",
        disable_tqdm=True, seed=0, max_length=64,
    )  # fmt: skip
    settings.update(overrides)
    return UndoConfig(**settings)


def distillation_text() -> Dataset:
    # The authors' mix: retain-domain and forget-domain text together.
    return Dataset.from_dict({"text": [text for pair in zip(RETAIN_TEXTS, FORGET_TEXTS) for text in pair]})


def eval_splits() -> dict[str, Dataset]:
    return {"retain": Dataset.from_dict({"text": RETAIN_TEXTS[:8]}), "forget": Dataset.from_dict({"text": FORGET_TEXTS[:8]})}


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[name] - b[name]).abs().max()) for name in a)


def kl_to(student: torch.nn.Module, teacher: torch.nn.Module, batch: dict) -> float:
    with torch.no_grad():
        mask = batch["labels"][:, 1:] != -100
        return float(distillation_loss(lm_outputs(student, batch).logits[:, :-1], lm_outputs(teacher, batch).logits[:, :-1], mask))


# --- the noise ---------------------------------------------------------------------------------------------


def test_noise_is_shrink_plus_xavier_uniform():
    original = tiny_llama(40)
    noise = weights(noise_weights_(copy.deepcopy(original), alpha=1.0, beta=1.0, seed=7))  # α = β = 1: N itself
    noised = weights(noise_weights_(copy.deepcopy(original), alpha=0.3, beta=0.1, seed=7))
    before = weights(original)
    for name, param in before.items():
        if param.dim() == 2:
            bound = math.sqrt(6 / (param.shape[0] + param.shape[1]))
            assert noise[name].abs().max() <= bound and noise[name].abs().max() > 0.9 * bound, name  # fills ±bound
            torch.testing.assert_close(noised[name], 0.7 * param + 0.3 * 0.1 * noise[name], rtol=0, atol=1e-6)
        else:  # 1-D (the norms): shrunk only
            assert torch.equal(noise[name], torch.zeros_like(param)), name
            torch.testing.assert_close(noised[name], 0.7 * param, rtol=0, atol=1e-6)
    # N is what torch.nn.init.xavier_uniform_ draws from the same seeded generator (the first 2-D weight: the embedding).
    first = next(name for name, param in before.items() if param.dim() == 2)
    expected = torch.nn.init.xavier_uniform_(torch.empty_like(before[first]), generator=torch.Generator().manual_seed(7))
    assert torch.equal(noise[first], expected)


def test_noise_edge_cases_and_seed():
    original = tiny_llama(40)
    assert max_difference(weights(noise_weights_(copy.deepcopy(original), 0.0, 0.5, seed=0)), weights(original)) == 0  # α = 0
    noise = weights(noise_weights_(copy.deepcopy(original), 1.0, 1.0, seed=3))
    scaled = weights(noise_weights_(copy.deepcopy(original), 1.0, 0.5, seed=3))  # α = 1: β·N, nothing of θ left
    assert all(torch.allclose(scaled[name], 0.5 * noise[name], rtol=0, atol=1e-7) for name in noise)
    assert max_difference(weights(noise_weights_(copy.deepcopy(original), 1.0, 1.0, seed=4)), noise) > 0.01  # another seed


def test_noise_skips_frozen_weights_and_shrinks_tied_ones_once():
    model = tiny_llama(40, tie_word_embeddings=True)
    embedding = model.get_input_embeddings().weight.detach().clone()
    norm = model.model.norm.weight
    norm.requires_grad_(False)
    noise_weights_(model, alpha=0.5, beta=0.0, seed=0)
    torch.testing.assert_close(model.get_input_embeddings().weight, 0.5 * embedding, rtol=0, atol=0)  # not 0.25: once
    assert model.lm_head.weight is model.get_input_embeddings().weight
    assert torch.equal(norm, torch.ones_like(norm))  # frozen: untouched


# --- the loss ----------------------------------------------------------------------------------------------


def test_distillation_loss_is_forward_kl_by_hand():
    teacher = torch.tensor([[[0.0, 1.0, 2.0], [1.0, 1.0, 1.0], [9.0, -9.0, 0.0]]])
    student = torch.tensor([[[2.0, 1.0, 0.0], [0.0, 0.5, 1.0], [-9.0, 9.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])  # the last position (padding) must not count

    def kl(t, s):  # Σ_v p(v) (log p(v) − log q(v)), by hand
        p = [math.exp(x) / sum(math.exp(y) for y in t) for x in t]
        q = [math.exp(x) / sum(math.exp(y) for y in s) for x in s]
        return sum(pv * (math.log(pv) - math.log(qv)) for pv, qv in zip(p, q))

    expected = (kl([0.0, 1.0, 2.0], [2.0, 1.0, 0.0]) + kl([1.0, 1.0, 1.0], [0.0, 0.5, 1.0])) / 2
    assert distillation_loss(student, teacher, mask).item() == pytest.approx(expected, rel=1e-6)
    assert distillation_loss(teacher, teacher, mask).item() == 0
    assert distillation_loss(student, teacher, torch.zeros_like(mask)).item() == 0  # no token: 0, not NaN
    half = distillation_loss(student.bfloat16(), teacher.bfloat16(), mask)
    assert half.dtype == torch.float32  # computed in fp32 from half-precision logits


def test_distillation_loss_equals_trl_generalized_jsd_at_beta_0():
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    gkd = pytest.importorskip("trl.experimental.gkd")
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 5, 11, dtype=torch.float64), torch.randn(2, 5, 11, dtype=torch.float64)
    labels = torch.tensor([[1, 2, 3, -100, -100], [4, 5, 6, 7, 8]])
    ours = distillation_loss(student, teacher, labels != -100)
    theirs = gkd.GKDTrainer.generalized_jsd_loss(student, teacher, labels=labels, beta=0.0)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)


# --- the trainer -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("optim, steps", [("sgd", 3), ("adamw_torch", 1)])
def test_without_noise_the_student_stays_the_teacher(tmp_path, optim, steps):
    """α = 0: the student is the teacher, the loss 0, its gradient rounding residue (3e-17 here, in float64). SGD
    keeps the weights; AdamW's step, lr·g/(|g| + eps), grows the residue (to about lr within 3 steps; in float32
    from the first), so AdamW is checked for its first step."""
    tokenizer = char_tokenizer()
    model = tiny_llama(len(tokenizer)).double()
    before = weights(model)
    args = undo_config(tmp_path, noise_alpha=0.0, max_steps=steps, optim=optim)
    trainer = UndoTrainer(model, args, train_dataset=distillation_text(), processing_class=tokenizer)
    trainer.train()
    first = trainer.state.log_history[0]
    assert first["loss"] == 0.0 and first["grad_norm"] < 1e-12
    assert max_difference(weights(trainer.model), before) < 1e-6
    assert trainer.model is model and trainer.teacher is not model


def test_the_noised_student_moves_towards_the_unchanged_teacher(tmp_path):
    tokenizer = char_tokenizer()
    model = tiny_llama(len(tokenizer))
    original = weights(model)
    args = undo_config(tmp_path, noise_alpha=0.5, noise_beta=0.1, max_steps=12, learning_rate=3e-3)
    trainer = UndoTrainer(model, args, train_dataset=distillation_text(), processing_class=tokenizer)
    batch = full_batch(Dataset.from_dict({"text": RETAIN_TEXTS + FORGET_TEXTS}), tokenizer)
    assert max_difference(weights(trainer.model), original) > 0.01  # noised in __init__, before train()
    start = kl_to(trainer.model, trainer.teacher, batch)
    trainer.train()
    assert kl_to(trainer.model, trainer.teacher, batch) < 0.5 * start
    assert max_difference(weights(trainer.teacher), original) == 0  # the teacher is the unlearned model, frozen
    assert not any(p.requires_grad for p in trainer.teacher.parameters()) and not trainer.teacher.training


class StopAt(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    tokenizer = char_tokenizer()
    unlearned = tiny_llama(len(tokenizer)).double()
    settings = dict(noise_alpha=0.3, max_steps=4, warmup_steps=1, save_strategy="steps", save_steps=2)

    straight = UndoTrainer(copy.deepcopy(unlearned), undo_config(tmp_path / "straight", **settings), train_dataset=distillation_text(), processing_class=tokenizer)
    straight.train()

    interrupted_args = undo_config(tmp_path / "resumed", **settings)
    interrupted = UndoTrainer(copy.deepcopy(unlearned), interrupted_args, train_dataset=distillation_text(), processing_class=tokenizer, callbacks=[StopAt(2)])
    interrupted.train()
    assert interrupted.state.global_step == 2 and (tmp_path / "resumed" / "checkpoint-2").is_dir()

    # Another noise seed: the student's weights can only come back from the checkpoint.
    resumed_args = undo_config(tmp_path / "resumed", **settings, noise_seed=1)
    resumed = UndoTrainer(copy.deepcopy(unlearned), resumed_args, train_dataset=distillation_text(), processing_class=tokenizer)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 4
    assert max_difference(weights(resumed.model), weights(straight.model)) < 1e-6
    assert max_difference(weights(resumed.teacher), weights(unlearned)) == 0  # the unlearned model, not the checkpoint
    assert resumed.state.num_input_tokens_seen == straight.state.num_input_tokens_seen


def test_tolerance_stops_training_and_the_record_says_so(tmp_path):
    tokenizer = char_tokenizer()
    model = tiny_llama(len(tokenizer))
    model.config._name_or_path = "HuggingFaceTB/SmolLM2-135M"
    # Any student is within 1000 % of the teacher: the first evaluation (step 1) stops the run.
    args = undo_config(tmp_path, max_steps=20, eval_strategy="steps", eval_steps=1, distill_tolerance=10.0)
    trainer = UndoTrainer(model, args, train_dataset=distillation_text(), eval_dataset=eval_splits(), processing_class=tokenizer)
    trainer.train()
    assert trainer.state.global_step == 1
    trainer.save_model()
    info = json.loads((tmp_path / "distillation_info.json").read_text())
    assert info["tolerance_reached"] and info["tolerance_reached_at_step"] == 1 and info["steps"] == 1
    assert info["distill_tokens"] == trainer.state.num_input_tokens_seen > 0
    assert info["teacher_retain_loss"] > 0 and info["student_retain_loss"] > info["teacher_retain_loss"]
    assert info["distill_to_pretraining_tokens"] == pytest.approx(info["distill_tokens"] / 2e12)
    assert (info["noise_alpha"], info["noise_beta"]) == (0.25, 0.1)


def test_a_student_beyond_tolerance_trains_on_and_a_token_budget_stops_it(tmp_path):
    tokenizer = char_tokenizer()
    teacher = tiny_llama(len(tokenizer))  # trained a little: a random teacher is beaten by any shrunk student
    optimizer, batch = torch.optim.AdamW(teacher.parameters(), lr=1e-2), full_batch(Dataset.from_dict({"text": RETAIN_TEXTS}), tokenizer)
    for _ in range(20):
        optimizer.zero_grad()
        lm_loss(teacher, batch)[0].backward()
        optimizer.step()
    args = undo_config(tmp_path, noise_alpha=0.5, max_steps=3, learning_rate=1e-3, eval_strategy="steps", eval_steps=1, distill_tolerance=0.05)
    trainer = UndoTrainer(teacher, args, train_dataset=distillation_text(), eval_dataset=eval_splits(), processing_class=tokenizer)
    trainer.train()
    info = trainer.distillation_info()
    assert trainer.state.global_step == 3 and not info["tolerance_reached"]
    assert info["student_retain_loss"] > 1.05 * info["teacher_retain_loss"]

    budget = undo_config(tmp_path, max_steps=20, max_distill_tokens=200)  # a step has about 125 tokens
    trainer = UndoTrainer(tiny_llama(len(tokenizer)), budget, train_dataset=distillation_text(), processing_class=tokenizer)
    trainer.train()
    seen = [entry["num_input_tokens_seen"] for entry in trainer.state.log_history if "loss" in entry]
    assert trainer.state.global_step == len(seen) == 2 and seen[0] < 200 <= seen[1]  # the first step that reaches it


def test_a_teacher_loaded_from_an_unlearned_folder_counts_its_base_models_pretraining_tokens(tmp_path):
    """An unlearned SmolLM2 loaded from ``outputs/...`` (as ``hf-unlearn distill`` loads it) is SmolLM2: its folder's
    ``unlearning_info.json`` names the model it was unlearned from."""
    tokenizer = char_tokenizer()
    folder = tmp_path / "mudman_unlearned"
    tiny_llama(len(tokenizer)).save_pretrained(folder)
    UnlearningInfo(base_model="HuggingFaceTB/SmolLM2-135M-Instruct", method="mudman", settings={}, forget={}, retain={}).save(folder)
    teacher = AutoModelForCausalLM.from_pretrained(folder)
    trainer = UndoTrainer(teacher, undo_config(tmp_path / "out", max_steps=1), train_dataset=distillation_text(), processing_class=tokenizer)
    trainer.train()
    info = trainer.distillation_info()
    assert info["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and info["pretraining_tokens"] == 2e12
    # A record another version wrote (a field this one lacks): its base model is still read.
    (folder / "unlearning_info.json").write_text(json.dumps({"base_model": "HuggingFaceTB/SmolLM2-360M", "a_later_field": 1}))
    assert unlearned_from(AutoModelForCausalLM.from_pretrained(folder)) == "HuggingFaceTB/SmolLM2-360M"


def test_stopping_rule_and_pretraining_tokens():
    assert within_tolerance(1.04, 1.0, 0.05) and not within_tolerance(1.06, 1.0, 0.05)
    assert within_tolerance(0.9, 1.0, 0.0)  # better than the teacher
    assert pretraining_tokens("HuggingFaceTB/SmolLM2-135M") == 2e12
    assert pretraining_tokens("/models/SmolLM2-1.7B-Instruct") == 11e12
    assert pretraining_tokens("google/gemma-2-27b") is None and pretraining_tokens("gpt2") is None


@pytest.mark.parametrize(
    "settings, field",
    [
        ({"noise_alpha": 1.5}, "noise_alpha"),
        ({"noise_alpha": -0.1}, "noise_alpha"),
        ({"noise_beta": 2.0}, "noise_beta"),
        ({"distill_tolerance": -0.05}, "distill_tolerance"),
        ({"distill_tolerance": float("nan")}, "distill_tolerance"),
        ({"max_distill_tokens": 0}, "max_distill_tokens"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"max_steps": 0}, "max_steps"),
        ({"distill_tolerance": 0.05, "eval_strategy": "no"}, "eval_strategy"),
        ({"max_distill_tokens": 100, "include_num_input_tokens_seen": "no"}, "include_num_input_tokens_seen"),
    ],
)
def test_bad_settings_are_refused(tmp_path, settings, field):
    with pytest.raises(ValueError, match=f"^{field}=") as error:
        undo_config(tmp_path, **settings)
    assert "\n" not in str(error.value)


def test_tolerance_without_a_retain_split_is_refused(tmp_path):
    tokenizer = char_tokenizer()
    args = undo_config(tmp_path, eval_strategy="steps", eval_steps=1, distill_tolerance=0.05)
    with pytest.raises(ValueError, match="eval_dataset=\\{'retain'"):
        UndoTrainer(tiny_llama(len(tokenizer)), args, train_dataset=distillation_text(), eval_dataset={"forget": eval_splits()["forget"]}, processing_class=tokenizer)


def test_a_tokenizer_larger_than_the_models_vocabulary_is_refused(tmp_path):
    """Another model's tokenizer: its ids would index past the embedding, in a traceback deep in the first forward."""
    tokenizer = char_tokenizer()
    with pytest.raises(ValueError, match=f"processing_class has {len(tokenizer)} tokens and the model's embedding 50 rows"):
        UndoTrainer(tiny_llama(50), undo_config(tmp_path), train_dataset=distillation_text(), processing_class=tokenizer)


def test_distillation_text_alternates_retain_and_forget_text_or_takes_the_retain_text_alone():
    """`hf-unlearn distill`'s data: the authors' mix (retain and forget-domain text alternated, the shorter part
    repeated), or with ``--distill_forget_text false`` the retain text alone."""
    from types import SimpleNamespace

    from hf_unlearn.commands.distill import distillation_text

    tokenizer = char_tokenizer()
    retain, forget = RETAIN_TEXTS[:6], FORGET_TEXTS[:3]
    scenario = SimpleNamespace(retain=Dataset.from_dict({"text": retain}), unlearn=Dataset.from_dict({"text": forget}))

    def texts(dataset: Dataset) -> list[str]:
        special = set(tokenizer.all_special_ids)  # one token a character: joined back, the text
        return ["".join(tokenizer.convert_ids_to_tokens([i for i in row["input_ids"] if i not in special])) for row in dataset]

    mixed = texts(distillation_text(scenario, tokenizer, seed=0))
    assert mixed[0::2] == retain and mixed[1::2] == forget + forget
    alone = texts(distillation_text(scenario, tokenizer, seed=0, forget_text=False))
    assert sorted(alone) == sorted(retain) and alone != retain, "the retain text, shuffled"
