"""UnlearnTrainer plumbing: resume, evaluation, logging, and clear errors on bad input."""

import copy
import json
import os
import warnings

import pytest
import torch
from conftest import char_tokenizer, tiny_llama, unlearn_config
from datasets import Dataset

from hf_unlearn import MUDMANConfig, TARConfig, UnlearnTrainer, get_method
from hf_unlearn.forward import lm_loss
from hf_unlearn.unlearn_trainer import METHOD_STATE_NAME, last_complete_checkpoint


def make_trainer(model, tokenizer, forget, retain, args, **kwargs):
    return UnlearnTrainer(model, args, forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer, **kwargs)


def test_resume_equals_uninterrupted_run(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    # The resumed run starts from other weights: ignoring the checkpoint, or part of the method's state,
    # would end elsewhere.
    twin = tiny_llama(len(tokenizer), seed=11)
    settings = dict(max_steps=6, save_strategy="steps", save_steps=3, fork_every_n_loops=2, adv_decay=0.8)
    straight = make_trainer(model, tokenizer, forget_dataset, retain_dataset, unlearn_config(tmp_path / "a", **settings))
    straight.train()
    checkpoint = tmp_path / "a" / "checkpoint-3"
    assert (checkpoint / METHOD_STATE_NAME).is_file()

    resumed = make_trainer(twin, tokenizer, forget_dataset, retain_dataset, unlearn_config(tmp_path / "b", **settings))
    resumed.train(resume_from_checkpoint=str(checkpoint))

    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resume"
    for key in ("retain_ema", "adversary"):
        for a, b in zip(straight.procedure.state_dict()[key], resumed.procedure.state_dict()[key]):
            assert torch.equal(a, b), key
    assert straight.procedure.loops_done == resumed.procedure.loops_done == 6
    assert straight.procedure.passes == resumed.procedure.passes


def test_resume_from_the_final_checkpoint_mid_epoch_takes_no_step_more(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    """max_steps=5 ends mid-epoch (6 steps per epoch): transformers resumed checkpoint-5 into a step 6, a full
    extra MUDMAN update."""
    settings = dict(max_steps=5, save_strategy="steps", save_steps=5)
    finished = make_trainer(model, tokenizer, forget_dataset, retain_dataset, unlearn_config(tmp_path / "a", **settings))
    finished.train()
    twin = tiny_llama(len(tokenizer), seed=11)
    resumed = make_trainer(twin, tokenizer, forget_dataset, retain_dataset, unlearn_config(tmp_path / "a", **settings))
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 5 and not (tmp_path / "a" / "checkpoint-6").exists()
    assert resumed.procedure.passes == finished.procedure.passes > 0, "the method's state is restored too"
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), f"{name}: the resumed run is not the finished run's weights"


def test_resume_without_method_state_is_refused(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    settings = dict(max_steps=2, save_strategy="steps", save_steps=1)
    make_trainer(model, tokenizer, forget_dataset, retain_dataset, unlearn_config(tmp_path / "a", **settings)).train()
    os.remove(tmp_path / "a" / "checkpoint-1" / METHOD_STATE_NAME)
    trainer = make_trainer(
        tiny_llama(len(tokenizer)), tokenizer, forget_dataset, retain_dataset, unlearn_config(tmp_path / "b", **settings)
    )
    with pytest.raises(FileNotFoundError, match=METHOD_STATE_NAME):
        trainer.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-1"))


def test_evaluate_reports_forget_and_retain_loss(memorised, tmp_path):
    model, tokenizer, forget, retain, (forget_batch, retain_batch) = memorised
    # One evaluation batch per split, so each eval loss is the token mean over that whole split.
    args = unlearn_config(tmp_path, per_device_eval_batch_size=64)
    trainer = make_trainer(copy.deepcopy(model), tokenizer, forget, retain, args, eval_dataset={"forget": forget, "retain": retain})
    metrics = trainer.evaluate()
    with torch.no_grad():
        expected = {"eval_forget_loss": lm_loss(model, forget_batch)[0].item(), "eval_retain_loss": lm_loss(model, retain_batch)[0].item()}
    assert abs(expected["eval_forget_loss"] - expected["eval_retain_loss"]) > 1e-3, "the splits differ, so a swap would show"
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-5), key


def test_training_logs_method_metrics(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    trainer = make_trainer(model, tokenizer, forget_dataset, retain_dataset, unlearn_config(tmp_path, max_steps=2))
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2
    for key in ("retain_loss", "unlearning_loss", "adversary_forget_loss", "mask_kept_fraction", "unlearning_grad_norm"):
        assert key in logs[0]
    assert 0 < logs[0]["mask_kept_fraction"] < 1
    assert logs[1]["forward_backward_passes"] == 2 * 4  # neg_cross_entropy: retain fwd+bwd, forget fwd+bwd


def test_retain_batches_differ_across_processes_and_steps(retain_dataset, tokenizer):
    from hf_unlearn.data import LMCollator, RetainStream

    collate = LMCollator(tokenizer.pad_token_id)
    ranks = [RetainStream(retain_dataset, collate, 4, seed=1, num_processes=2, process_index=r) for r in (0, 1)]
    seen = [set(ranks[r].indices(step)) for step in range(4) for r in (0, 1)]
    union = set().union(*seen)
    assert len(union) == sum(len(s) for s in seen) == 32, "no example repeats within a pass over the retain set"
    assert ranks[0].indices(2) == RetainStream(retain_dataset, collate, 4, 1, 2, 0).indices(2), "deterministic"


# --- bad input: clear errors before any training starts ---------------------------------------


def test_empty_forget_set(model, tokenizer, retain_dataset, tmp_path):
    empty = Dataset.from_dict({"text": []})
    with pytest.raises(ValueError, match="forget dataset is empty"):
        make_trainer(model, tokenizer, empty, retain_dataset, unlearn_config(tmp_path))


def test_dataset_without_text_column(model, tokenizer, forget_dataset, tmp_path):
    wrong = Dataset.from_dict({"content": ["a b c"] * 4})
    with pytest.raises(ValueError, match=r"retain dataset has columns \['content'\].*dataset_text_field"):
        make_trainer(model, tokenizer, forget_dataset, wrong, unlearn_config(tmp_path))


def test_custom_text_field_is_used(model, tokenizer, forget_dataset, tmp_path):
    retain = Dataset.from_dict({"content": ["some retained words"] * 4})
    forget = forget_dataset.rename_column("text", "content")
    trainer = make_trainer(model, tokenizer, forget, retain, unlearn_config(tmp_path, dataset_text_field="content"))
    assert trainer.train_dataset.column_names == ["input_ids", "attention_mask"]


def test_tokenizer_without_pad_token(model, forget_dataset, retain_dataset, tmp_path):
    with pytest.raises(ValueError, match="no pad token.*tokenizer.pad_token = tokenizer.eos_token"):
        make_trainer(model, char_tokenizer(with_pad=False), forget_dataset, retain_dataset, unlearn_config(tmp_path))


def test_target_matching_nothing_lists_layers(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    args = unlearn_config(tmp_path, target_modules=["dense_h_to_4h"])
    with pytest.raises(ValueError, match="'dense_h_to_4h' matches no linear layer.*gate_proj, k_proj"):
        make_trainer(model, tokenizer, forget_dataset, retain_dataset, args)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("max_grad_norm", 1.0, "max_grad_norm=0"),
        ("gradient_accumulation_steps", 2, "raise per_device_train_batch_size"),
        ("optim", "adamw_torch", "optim='sgd'"),
        ("unlearning_loss", "nope", "choose one of"),
        ("method", "nope", "available methods: cir, circuit_breakers, graddiff, mudman"),
        ("retain_momentum", 1.0, r"\[0, 1\)"),
        ("fork_every_n_loops", 0, ">= 1"),
        ("disruption_unit", "percent", "use one of nats, relative"),
        ("disruption_budget", -0.1, "it must be > 0"),
    ],
)
def test_config_validation(tmp_path, field, value, message):
    """Refused by the config, or by the method's check of it (which the trainer and the CLI run)."""
    with pytest.raises(ValueError, match=message) as error:
        config = MUDMANConfig(output_dir=str(tmp_path), **{field: value})
        get_method(config.method).check_args(config)
    assert field in str(error.value)


def test_resume_true_skips_a_checkpoint_cut_short(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    settings = dict(max_steps=3, save_strategy="steps", save_steps=1)
    make_trainer(model, tokenizer, forget_dataset, retain_dataset, unlearn_config(tmp_path, **settings)).train()
    assert last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-3")
    (tmp_path / "checkpoint-3" / "trainer_state.json").write_text('{"global_st')  # a kill mid-write
    (tmp_path / "checkpoint-2" / METHOD_STATE_NAME).unlink()  # a kill before the method state was written
    assert last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-1")
    resumed = make_trainer(tiny_llama(len(tokenizer)), tokenizer, forget_dataset, retain_dataset, unlearn_config(tmp_path, **settings))
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 3 and resumed.procedure.loops_done == 3
    empty = make_trainer(tiny_llama(len(tokenizer)), tokenizer, forget_dataset, retain_dataset, unlearn_config(tmp_path / "none", **settings))
    with pytest.raises(ValueError, match="holds no complete checkpoint"):
        empty.train(resume_from_checkpoint=True)


def test_a_checkpoint_of_another_run_is_refused(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    """resume_from_checkpoint=True in a reused folder resumed another run's checkpoint (run B ended on run A's
    weights), and another method's checkpoint continued silently."""
    settings = dict(max_steps=2, save_strategy="steps", save_steps=1)
    make_trainer(model, tokenizer, forget_dataset, retain_dataset, unlearn_config(tmp_path, **settings)).train()
    other_rate = make_trainer(tiny_llama(len(tokenizer)), tokenizer, forget_dataset, retain_dataset,
                              unlearn_config(tmp_path, unlearning_rate=0.5, **settings))  # fmt: skip
    with pytest.raises(ValueError, match=r"another run \(settings: .*unlearning_rate"):
        other_rate.train(resume_from_checkpoint=True)
    other_method = make_trainer(tiny_llama(len(tokenizer)), tokenizer, forget_dataset, retain_dataset,
                                unlearn_config(tmp_path, config_class=TARConfig, **settings))  # fmt: skip
    with pytest.raises(ValueError, match=r"method: 'mudman' -> 'tar'"):
        other_method.train(resume_from_checkpoint=str(tmp_path / "checkpoint-1"))
    other_data = make_trainer(tiny_llama(len(tokenizer)), tokenizer, forget_dataset.select(range(12)), retain_dataset,
                              unlearn_config(tmp_path, **settings))  # fmt: skip
    with pytest.raises(ValueError, match=r"forget_data"):
        other_data.train(resume_from_checkpoint=True)
    longer = make_trainer(tiny_llama(len(tokenizer)), tokenizer, forget_dataset, retain_dataset, unlearn_config(tmp_path, **{**settings, "max_steps": 3}))
    longer.train(resume_from_checkpoint=True)  # the same run, continued for longer
    assert longer.state.global_step == 3


def test_no_pinned_memory_warning_without_an_accelerator(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    """torch warned "'pin_memory' argument is set as true but no accelerator is found" 32 times a run."""
    if torch.cuda.is_available():
        pytest.skip("a GPU pins memory")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_trainer(model, tokenizer, forget_dataset, retain_dataset, unlearn_config(tmp_path, max_steps=2)).train()
    assert not [w for w in caught if "pin_memory" in str(w.message)]


def test_a_checkpoint_is_complete_only_with_every_process_state(tmp_path):
    """Two processes: a checkpoint holding the trainer state and rank 0's method state but not rank 1's (a kill
    while rank 1 was writing) is not complete; the one before it is."""
    from hf_unlearn.unlearn_trainer import method_state_name

    for step, ranks in ((4, (0, 1)), (5, (0,))):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        for rank in ranks:
            (folder / method_state_name(rank)).write_bytes(b"")
    assert last_complete_checkpoint(str(tmp_path), num_processes=2) == str(tmp_path / "checkpoint-4")
    assert last_complete_checkpoint(str(tmp_path), num_processes=1) == str(tmp_path / "checkpoint-5")


def test_a_weights_only_checkpoint_says_why_it_cannot_be_resumed(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    """save_only_model=True checkpoints were called "interrupted while saving?"."""
    settings = dict(max_steps=2, save_strategy="steps", save_steps=1, save_only_model=True)
    make_trainer(model, tokenizer, forget_dataset, retain_dataset, unlearn_config(tmp_path, **settings)).train()
    resumed = make_trainer(tiny_llama(len(tokenizer)), tokenizer, forget_dataset, retain_dataset, unlearn_config(tmp_path / "b", **settings))
    with pytest.raises(FileNotFoundError, match="save_only_model=True, which keeps the weights only"):
        resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-1"))


def test_models_load_in_float32_and_resume_false_is_no_resume(tokenizer, forget_dataset, retain_dataset, tmp_path):
    """Checkpoints saved in bf16 loaded as bf16 (transformers' dtype "auto") and were then refused for training;
    train(resume_from_checkpoint=False), which the Trainer reads as "do not resume", crashed."""
    tiny_llama(len(tokenizer)).to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    tokenizer.save_pretrained(tmp_path / "bf16")
    trainer = make_trainer(str(tmp_path / "bf16"), tokenizer, forget_dataset, retain_dataset, unlearn_config(tmp_path / "out", max_steps=1))
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    trainer.train(resume_from_checkpoint=False)
    assert trainer.state.global_step == 1
    with pytest.raises(ValueError, match="batch_eval_metrics=True and eval_do_concat_batches=False are not supported"):
        make_trainer(tiny_llama(len(tokenizer)), tokenizer, forget_dataset, retain_dataset,
                     unlearn_config(tmp_path / "out", batch_eval_metrics=True))  # fmt: skip


def test_every_method_has_one_disruption_budget_and_any_method_stops_at_it(model, tokenizer, forget_dataset, tmp_path):
    """One budget, one unit, on every method's config (not CIR's alone): GradDiff with +0.001 nats stops at the first
    evaluation beyond it and keeps the last weights within it."""
    from hf_unlearn import DisruptionBudgetCallback, GradDiffConfig, available_methods, get_method
    from hf_unlearn.evaluation.disruption import DisruptionBudget
    from hf_unlearn.model_card import model_card

    for method in available_methods():
        assert {"disruption_budget", "disruption_unit"} <= get_method(method).config.__dataclass_fields__.keys(), method
    with pytest.raises(ValueError, match="eval_strategy='no' is invalid: a disruption_budget is checked at evaluations"):
        unlearn_config(tmp_path, config_class=GradDiffConfig, disruption_budget=0.01)
    settings = dict(max_steps=30, learning_rate=0.05, retaining_rate=0.0, disruption_budget=1e-3, disruption_unit="nats",
                    eval_strategy="steps", eval_steps=1, eval_on_start=True)  # fmt: skip
    args = unlearn_config(tmp_path, config_class=GradDiffConfig, **settings)
    with pytest.raises(ValueError, match='pass eval_dataset=\\{"retain"'):
        UnlearnTrainer(model, args, forget_dataset=forget_dataset, retain_dataset=forget_dataset, processing_class=tokenizer)
    # Gradient ascent with the budget watching the forget text itself: its loss must rise past the budget.
    trainer = UnlearnTrainer(model, args, forget_dataset=forget_dataset, retain_dataset=forget_dataset, processing_class=tokenizer,
                             eval_dataset={"retain": forget_dataset})  # fmt: skip
    trainer.train()
    (budget,) = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, DisruptionBudgetCallback)]
    assert budget.budget == DisruptionBudget(1e-3, "nats")
    assert budget.exceeded_at is not None and trainer.state.global_step < 30, "stopped at the budget"
    assert trainer.evaluate()["eval_retain_loss"] <= budget.start + 1e-3, "the weights in hand are within the budget"
    # The card states the budget, and the retain loss of the weights it keeps (not of the evaluation beyond the budget).
    info = trainer.unlearning_info()
    assert info.disruption_budget == "+0.001 nats" and info.disruption["retain_loss_after"] == budget.within_budget["value"]
    assert "Its disruption budget was +0.001 nats" in model_card(info).text
