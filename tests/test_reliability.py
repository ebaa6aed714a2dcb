"""Nothing lost, nothing silent: divergence guards, settings nobody reads, and bad input, each refused
with an error that names the field and the fix."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_llama, unlearn_config
from datasets import Dataset

from hf_unlearn import (
    CIRConfig,
    CircuitBreakersConfig,
    MUDMANConfig,
    NPOConfig,
    RelearnAttackConfig,
    RelearnAttackTrainer,
    RMUConfig,
    UnlearnTrainer,
    get_method,
)
from hf_unlearn.data import DataArguments, DatasetSchemaError, build_unlearning_data, load_text_source
from hf_unlearn.distributed import requested_processes
from hf_unlearn.evaluation import FactEvaluator, MCQEvaluator
from hf_unlearn.models import resolve_model_name_or_path
from hf_unlearn.unlearn_trainer import UnlearningDivergedError


def trainer_for(model, tokenizer, forget, retain, args, **kwargs):
    return UnlearnTrainer(model, args, forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer, **kwargs)


# --- divergence -----------------------------------------------------------------------------------


def test_an_exploding_rate_stops_training_and_saves_nothing(memorised, tmp_path):
    model, tokenizer, forget, retain, _ = memorised
    args = unlearn_config(tmp_path, unlearning_rate=1e9, max_steps=4, save_strategy="steps", save_steps=1)
    with pytest.raises(UnlearningDivergedError, match=r"step [01]: .*(NaN/inf|x its value before unlearning)"):
        trainer_for(copy.deepcopy(model), tokenizer, forget, retain, args).train()
    assert not list(tmp_path.glob("checkpoint-*")), "no checkpoint of the broken model was written"


def test_a_nan_loss_stops_training(model, tokenizer, forget_dataset, retain_dataset, tmp_path, monkeypatch):
    trainer = trainer_for(model, tokenizer, forget_dataset, retain_dataset, unlearn_config(tmp_path, max_steps=3))
    step = trainer.procedure.training_step

    def nan_loss(*args):
        loss, metrics = step(*args)
        return loss * float("nan"), metrics

    monkeypatch.setattr(trainer.procedure, "training_step", nan_loss)
    with pytest.raises(UnlearningDivergedError, match="step 0: the 'mudman' update is NaN/inf"):
        trainer.train()


def test_a_rate_that_destroys_the_model_is_caught_before_saving(memorised, tmp_path):
    # Finite updates of RMS 0.3 on weights of RMS ~0.02: the model is wrecked but nothing is NaN.
    model, tokenizer, forget, retain, _ = memorised
    args = unlearn_config(tmp_path, unlearning_rate=0.3, max_steps=3, save_strategy="steps", save_steps=3)
    with pytest.raises(UnlearningDivergedError, match=r"step 3: the retain loss is .*x its value before unlearning"):
        trainer_for(copy.deepcopy(model), tokenizer, forget, retain, args).train()
    assert not (tmp_path / "checkpoint-3").exists()
    off = unlearn_config(tmp_path / "off", unlearning_rate=0.3, max_steps=3, max_retain_loss_ratio=0)
    trainer_for(copy.deepcopy(model), tokenizer, forget, retain, off).train()  # the check can be switched off


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_rates_are_refused(tmp_path, value):
    with pytest.raises(ValueError, match="unlearning_rate=.* is invalid: rates must be finite"):
        MUDMANConfig(output_dir=str(tmp_path), unlearning_rate=value)
    with pytest.raises(ValueError, match="learning_rate=.* is invalid: rates must be finite"):
        RelearnAttackConfig(output_dir=str(tmp_path), learning_rate=value)


# --- settings that would be silently wrong --------------------------------------------------------


@pytest.mark.parametrize(
    "config_class, field, value",
    [
        (RMUConfig, "retain_representation_weight", 0.1),  # RMU's retain objective is its own
        (CircuitBreakersConfig, "retain_representation_weight", 0.1),
        (CircuitBreakersConfig, "unlearning_rate", 2.0),  # the cb_alpha schedule weighs its losses
        (CircuitBreakersConfig, "retaining_rate", 2.0),
        (NPOConfig, "unlearning_loss", "neg_entropy"),  # NPO's forget objective is its own
        (CIRConfig, "disruption_masking", True),  # CIR builds its own update
    ],
)
def test_a_setting_the_method_cannot_read_does_not_exist(tmp_path, config_class, field, value):
    with pytest.raises(TypeError, match=rf"unexpected keyword argument '{field}'"):
        config_class(output_dir=str(tmp_path), **{field: value})


def test_a_setting_switched_off_is_refused_by_the_method(tmp_path):
    """The method checks its config (the trainer asks it, and the CLI before loading the model)."""
    with pytest.raises(ValueError, match=r"adv_lr=0.1 is not used by method 'mudman' \(meta_learning is off\)"):
        get_method("mudman").check_args(MUDMANConfig(output_dir=str(tmp_path), meta_learning=False, adv_lr=0.1))


@pytest.mark.parametrize("settings", [{"lr_scheduler_type": "linear"}, {"warmup_steps": 2}])
def test_methods_that_build_their_update_refuse_schedules(tmp_path, settings):
    field = next(iter(settings))
    with pytest.raises(ValueError, match=f"{field}=.* is invalid for method 'mudman'"):
        get_method("mudman").check_args(MUDMANConfig(output_dir=str(tmp_path), **settings))
    get_method("npo").check_args(NPOConfig(output_dir=str(tmp_path), **settings))  # an optimizer-driven method takes any schedule


@pytest.mark.parametrize("config_class", [MUDMANConfig, RelearnAttackConfig])
def test_max_steps_zero_is_refused(tmp_path, config_class):
    with pytest.raises(ValueError, match="max_steps=0 is invalid: use a positive number of steps, or -1"):
        config_class(output_dir=str(tmp_path), max_steps=0)


def test_a_tied_output_head_cannot_be_targeted(tokenizer, forget_dataset, retain_dataset, tmp_path):
    model = tiny_llama(len(tokenizer), tie_word_embeddings=True)
    with pytest.raises(ValueError, match="lm_head.weight is tied to model.embed_tokens.weight"):
        trainer_for(model, tokenizer, forget_dataset, retain_dataset, unlearn_config(tmp_path, target_modules=["lm_head"]))


def test_accelerate_cpu_launch_with_several_processes_is_refused(tmp_path):
    assert requested_processes(["accelerate", "launch", "--cpu", "--num_processes", "2", "x.py"]) == 2
    assert requested_processes(["accelerate", "launch", "--num-processes=4", "x.py"]) == 4
    assert requested_processes(["python", "x.py"]) is None
    script = tmp_path / "one.py"
    script.write_text(
        "from hf_unlearn import MUDMANConfig\nfrom hf_unlearn.distributed import check_process_count\n"
        f"check_process_count(MUDMANConfig(output_dir={str(tmp_path)!r}, report_to='none').world_size)\n"
    )
    accelerate = Path(sys.executable).parent / "accelerate"
    result = subprocess.run([str(accelerate), "launch", "--cpu", "--num_processes", "2", str(script)], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "asked for --num_processes 2, but this run has 1 process" in result.stderr and "torchrun --nproc_per_node 2" in result.stderr


# --- bad input, refused before training ------------------------------------------------------------


def test_a_row_without_text(model, tokenizer, retain_dataset, tmp_path):
    forget = Dataset.from_dict({"text": ["a b c", None, "d e f"]})
    with pytest.raises(ValueError, match=r"forget dataset has no text \('text' is null\) in rows \[1\]: drop or fill"):
        trainer_for(model, tokenizer, forget, retain_dataset, unlearn_config(tmp_path))


@pytest.mark.parametrize(
    "content, message",
    [("", "is empty"), ('{"text": "fine"}\n{"text": broken\n', "could not read data file .*one JSON object per line")],
)
def test_empty_or_malformed_jsonl(tmp_path, content, message):
    path = tmp_path / "forget.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=f"forget_source='{path}': .*{message}"):
        build_unlearning_data(DataArguments(forget_source=str(path)), None)


def test_a_misspelled_source_lists_the_built_in_ones():
    with pytest.raises(ValueError, match="'python_stdlb' is not a built-in text source \\(python_stdlib, pydoc_prose, .*Did you mean 'python_stdlib'"):
        load_text_source("python_stdlb")
    with pytest.raises(ValueError, match="retain_source='pydoc_prse'"):
        build_unlearning_data(DataArguments(retain_source="pydoc_prse"), None)


def test_a_model_path_that_does_not_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="model_name_or_path='.*/nowhere' does not exist"):
        resolve_model_name_or_path(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="is a folder without config.json"):
        resolve_model_name_or_path(str(tmp_path))
    assert resolve_model_name_or_path("org/model") == "org/model", "a Hub id is left to from_pretrained"


def test_an_mcq_answer_out_of_range_fails_at_construction():
    questions = Dataset.from_list([{"question": "q?", "choices": ["a", "b", "c", "d"], "answer": 4}])
    with pytest.raises(DatasetSchemaError, match="'answer' is 4 in row 0, outside 0..3"):
        MCQEvaluator(questions)


def test_a_fact_with_an_empty_answer_is_refused():
    with pytest.raises(DatasetSchemaError, match="'answer' is empty in row 1"):
        FactEvaluator(Dataset.from_list([{"prompt": "The capital of Peru is", "answer": "Lima"}, {"prompt": "x is", "answer": " "}]))



def test_target_modules_with_a_lora_adapter_are_refused(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    """With an adapter (peft_config, --use_peft) the adapter's own targets train: target_modules was silently ignored."""
    from peft import LoraConfig

    args = unlearn_config(tmp_path, target_modules=["up_proj"])
    with pytest.raises(ValueError, match=r"target_modules=\['up_proj'\] has no effect on a LoRA adapter.*lora_target_modules"):
        UnlearnTrainer(model, args, forget_dataset=forget_dataset, retain_dataset=retain_dataset, processing_class=tokenizer,
                       peft_config=LoraConfig(r=4, target_modules=["q_proj"]))  # fmt: skip
    trainer = UnlearnTrainer(model, unlearn_config(tmp_path), forget_dataset=forget_dataset, retain_dataset=retain_dataset,
                             processing_class=tokenizer, peft_config=LoraConfig(r=4, target_modules=["q_proj"]))  # fmt: skip
    assert trainer.procedure.target_names and all("q_proj.lora" in name for name in trainer.procedure.target_names)


def test_half_precision_weights_are_refused_for_training(tokenizer, forget_dataset, retain_dataset, tmp_path):
    """bf16 weights trained in place rounded most updates away (MUDMAN: 8 % of gate_proj changed in 5 steps), and a
    weakened attack overstates robustness; a LoRA adapter on a bf16 model trains fp32 weights and is accepted."""
    from peft import LoraConfig

    model = tiny_llama(len(tokenizer)).to(torch.bfloat16)
    with pytest.raises(ValueError, match=r"trained weights are bfloat16.*--dtype float32.*--bf16.*--use_peft"):
        UnlearnTrainer(model, unlearn_config(tmp_path), forget_dataset=forget_dataset, retain_dataset=retain_dataset, processing_class=tokenizer)
    with pytest.raises(ValueError, match=r"trained weights are bfloat16"):
        RelearnAttackTrainer(model, RelearnAttackConfig(output_dir=str(tmp_path), max_steps=1, report_to="none"),
                             attack_dataset=forget_dataset, eval_dataset={"forget": forget_dataset}, processing_class=tokenizer)  # fmt: skip
    UnlearnTrainer(model, unlearn_config(tmp_path), forget_dataset=forget_dataset, retain_dataset=retain_dataset, processing_class=tokenizer,
                   peft_config=LoraConfig(r=4, target_modules=["gate_proj"]))  # fmt: skip


def test_max_length_blank_rows_and_positions(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    """--max_length was ignored for the CLI's pre-tokenized chunks; whitespace-only rows were trained on; sequences
    longer than the model's positions trained silently (RoPE) or crashed (GPT-2)."""
    from hf_unlearn.data import prepare_lm_dataset

    chunks = Dataset.from_dict({"input_ids": [list(range(5, 45))] * 3})
    assert {len(ids) for ids in prepare_lm_dataset(chunks, tokenizer, name="forget", max_length=16)["input_ids"]} == {16}
    texts = Dataset.from_dict({"text": ["vault 1 opens", "   \n\t ", "vault 2 opens"]})
    assert len(prepare_lm_dataset(texts, tokenizer, name="forget")) == 2, "the blank row is dropped"
    long = Dataset.from_dict({"input_ids": [list(range(5, 5 + 200))]})  # the tiny model has 128 positions
    with pytest.raises(ValueError, match=r"the forget dataset has sequences of 200 tokens, more than the model's 128 positions: set max_length"):
        UnlearnTrainer(model, unlearn_config(tmp_path, max_length=None), forget_dataset=long, retain_dataset=retain_dataset,
                       processing_class=tokenizer)  # fmt: skip
    UnlearnTrainer(model, unlearn_config(tmp_path, max_length=100), forget_dataset=long, retain_dataset=retain_dataset, processing_class=tokenizer)


def test_an_output_dir_that_cannot_be_written_is_refused_before_training(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    """A read-only output folder was found only at the final save: with save_strategy "no" the whole run was lost."""
    (tmp_path / "a_file").write_text("")
    with pytest.raises(PermissionError, match=r"output_dir=.*a_file/out.* cannot be written"):
        UnlearnTrainer(model, unlearn_config(tmp_path / "a_file" / "out"), forget_dataset=forget_dataset, retain_dataset=retain_dataset,
                       processing_class=tokenizer)  # fmt: skip


def test_a_nan_gradient_with_a_finite_loss_stops_training_unapplied(model, tokenizer, forget_dataset, retain_dataset, tmp_path, monkeypatch):
    trainer = trainer_for(model, tokenizer, forget_dataset, retain_dataset, unlearn_config(tmp_path, max_steps=3))
    step = trainer.procedure.training_step

    def nan_gradient(*args):
        loss, metrics = step(*args)
        next(iter(trainer.target_parameters().values())).grad.view(-1)[0] = float("nan")
        return loss, metrics

    monkeypatch.setattr(trainer.procedure, "training_step", nan_gradient)
    with pytest.raises(UnlearningDivergedError, match="step 0: the 'mudman' update is NaN/inf"):
        trainer.train()
    assert all(torch.isfinite(p).all() for p in trainer.target_parameters().values()), "the NaN update was not applied"


def test_a_nan_retain_probe_stops_training(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    from hf_unlearn.unlearn_trainer import BrokenModelGuard

    trainer = trainer_for(model, tokenizer, forget_dataset, retain_dataset, unlearn_config(tmp_path, max_steps=2))
    guard = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, BrokenModelGuard))
    probe = guard.probe
    guard.probe = lambda: probe() if guard.start is None else float("nan")  # the start is finite, the model at the end is not
    with pytest.raises(UnlearningDivergedError, match="the retain loss is nan"):
        trainer.train()


def test_the_broken_model_guard_keeps_its_start_across_a_resume(memorised, tmp_path):
    """A resumed run measured its start again, on weights already unlearned: a later, laxer reference."""
    from hf_unlearn.unlearn_trainer import BrokenModelGuard

    model, tokenizer, forget, retain, _ = memorised
    settings = dict(unlearning_rate=0.02, max_steps=4, save_strategy="steps", save_steps=2)
    first = trainer_for(copy.deepcopy(model), tokenizer, forget, retain, unlearn_config(tmp_path, **settings))
    first.train()
    resumed = trainer_for(tiny_llama(len(tokenizer)), tokenizer, forget, retain, unlearn_config(tmp_path, **settings))
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    guards = [next(cb for cb in t.callback_handler.callbacks if isinstance(cb, BrokenModelGuard)) for t in (first, resumed)]
    assert guards[1].start == guards[0].start
    assert abs(guards[1].probe() - guards[0].start) > 1e-4, "the weights moved: a start measured again would differ"


def test_bf16_autocast_on_a_cpu_that_emulates_bf16_is_called_out(monkeypatch, tmp_path):
    """Trials under --bf16 ran 13x slower than float32 on an AVX2-only AMD EPYC: a CPU without bf16 units is named."""
    from transformers import TrainingArguments

    from hf_unlearn import causal_lm_trainer, environment

    capabilities = {"avx2": True, "avx512_bf16": False, "amx_bf16": False}
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    assert not environment.cpu_has_bf16_units()
    bf16 = TrainingArguments(output_dir=str(tmp_path), bf16=True, use_cpu=True, report_to="none")
    assert causal_lm_trainer.warn_if_bf16_is_emulated(bf16)
    assert not causal_lm_trainer.warn_if_bf16_is_emulated(TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none"))
    capabilities["amx_bf16"] = True  # a Xeon with AMX
    assert environment.cpu_has_bf16_units() and not causal_lm_trainer.warn_if_bf16_is_emulated(bf16)
