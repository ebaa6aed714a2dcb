"""Run by test_distributed.py: an unlearning method on a tiny model, final target weights saved by rank 0.

    python tests/distributed_unlearn.py OUT.pt GLOBAL_BATCH METHOD [MODE OUTPUT_DIR]
    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 tests/distributed_unlearn.py OUT.pt GLOBAL_BATCH METHOD [MODE OUTPUT_DIR]
    python tests/distributed_unlearn.py OUT_FOLDER GLOBAL_BATCH METHOD,METHOD,...   # each in turn, OUT_FOLDER/<method>.pt

MODE ``straight`` (default) trains to the end; ``killed`` checkpoints every step and dies in the
middle of writing checkpoint ``KILL_STEP`` (as a kill would: model written, the rest not);
``resume`` resumes the run in OUTPUT_DIR with ``resume_from_checkpoint=True``; ``save`` trains to the end and
``save_model``s into OUTPUT_DIR; ``slow_rank1`` checkpoints
every step with rank 1 slow to write its method state, and exits 9 if the trainer state of a checkpoint is
written before every process's method state.
"""

import os
import sys
import tempfile
import time

import torch
from conftest import FORGET_TEXTS, RETAIN_TEXTS, char_tokenizer, tiny_llama, unlearn_config
from datasets import Dataset
from peft import LoraConfig
from transformers import Trainer, TrainerCallback

from hf_unlearn import (
    CIRConfig,
    CircuitBreakersConfig,
    GradDiffConfig,
    NPOConfig,
    RMUConfig,
    SimNPOConfig,
    TARConfig,
    UnlearnTrainer,
)
from hf_unlearn.forward import is_sharded
from hf_unlearn.gradients import full_value
from hf_unlearn.unlearn_trainer import method_state_name

SETTINGS = {
    # 4 loops across a re-fork, with adversary decay
    "mudman": dict(max_steps=4, fork_every_n_loops=2, adv_decay=0.8, unlearning_rate=0.02),
    # 24 forget texts at batch 8: epoch 0 collects statistics (gathered from both processes), epochs 1-2 update: the
    # resumed run (killed in epoch 1) uses each process's own restored statistics for a whole epoch (at 6 steps it ended first)
    "cir": dict(
        config_class=CIRConfig, max_steps=9, loss_layers=[0, 1], retain_layer=2, act_components=2, grad_components=2,
        pca_niter=4, step_norm=0.5, retaining_rate=1e-3, disruption_budget=None, eval_strategy="no", eval_on_start=False,
        retain_batch_size=None,  # per_device_train_batch_size: half the global batch on each of two processes
    ),
    # The other methods, at the settings of test_methods.py: 3 steps each.
    "tar": dict(config_class=TARConfig, max_steps=3, unlearning_rate=1.0),
    "graddiff": dict(config_class=GradDiffConfig, max_steps=3, learning_rate=1e-3),
    "npo": dict(config_class=NPOConfig, max_steps=3, learning_rate=1e-3),
    "simnpo": dict(config_class=SimNPOConfig, max_steps=3, learning_rate=1e-3),
    "rmu": dict(config_class=RMUConfig, max_steps=3, learning_rate=1e-3, rmu_layer=1, retaining_rate=10.0),
    # Circuit Breakers on an adapter started away from zero, as in test_golden.py: full-rank, it starts at a stationary
    # point whose first gradient is rounding noise that AdamW turns into full steps, so the result would follow the
    # order of the additions (methods/circuit_breakers.py), and layouts could only be compared within the step size.
    "circuit_breakers_lora": dict(config_class=CircuitBreakersConfig, max_steps=3, learning_rate=1e-3, cb_layers=[1, 2]),
    # A LoRA adapter trains (its reference: the adapter disabled).
    "npo_lora": dict(config_class=NPOConfig, max_steps=3, learning_rate=1e-2),
    # WAGLE's static mask: half of the weights, chosen over all shards together.
    "graddiff_wagle": dict(config_class=GradDiffConfig, max_steps=3, learning_rate=1e-3, wagle_fraction=0.5),
}  # fmt: skip
KILL_STEP = {"mudman": 3, "cir": 5}  # CIR: mid epoch 1, each process holding its own statistics


def die_while_saving(method: str):
    original = UnlearnTrainer._save_optimizer_and_scheduler

    def save(self, output_dir):
        if self.state.global_step == KILL_STEP[method]:
            Trainer._save_optimizer_and_scheduler(self, output_dir)  # the optimizer is written, the method state not
            os._exit(17)
        original(self, output_dir)

    UnlearnTrainer._save_optimizer_and_scheduler = save


def slow_rank1():
    original = UnlearnTrainer._save_optimizer_and_scheduler

    def save(self, output_dir):
        if self.args.process_index == 1:
            time.sleep(2)
        original(self, output_dir)

    UnlearnTrainer._save_optimizer_and_scheduler = save


class CheckCompleteOnSave(TrainerCallback):
    """Called after the trainer state is written: every process's method state must be there already."""

    def on_save(self, args, state, control, **kwargs):
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if state.is_world_process_zero and not all(os.path.isfile(os.path.join(folder, method_state_name(r))) for r in range(args.world_size)):
            os._exit(9)


def main(out_path: str, global_batch: int, method: str, mode: str = "straight", output_dir: str | None = None) -> None:
    tokenizer = char_tokenizer()
    model = tiny_llama(len(tokenizer))
    with tempfile.TemporaryDirectory() as tmp:
        checkpoints = dict(save_strategy="steps", save_steps=1) if mode != "straight" else {}
        args = unlearn_config(output_dir or tmp, **SETTINGS[method], **checkpoints)
        args.per_device_train_batch_size = global_batch // args.world_size
        if mode == "killed":
            die_while_saving(method)
        if mode == "slow_rank1":
            slow_rank1()
        trainer = UnlearnTrainer(
            model,
            args,
            forget_dataset=Dataset.from_dict({"text": FORGET_TEXTS}),
            retain_dataset=Dataset.from_dict({"text": RETAIN_TEXTS}),
            processing_class=tokenizer,
            callbacks=[CheckCompleteOnSave()] if mode == "slow_rank1" else None,
            peft_config=LoraConfig(r=4, target_modules=["gate_proj", "up_proj", "down_proj"], init_lora_weights=False) if method.endswith("_lora") else None,
        )
        initial = {name: p.detach().clone() for name, p in trainer.target_parameters().items()}  # before FSDP shards them
        trainer.train(resume_from_checkpoint=True if mode == "resume" else None)
        if mode == "save":
            trainer.save_model(output_dir)
    # Under FSDP each process holds a shard of every weight: gathered whole (by every process) for the comparison.
    weights = {name: full_value(p.detach()).cpu() for name, p in trainer.target_parameters().items()}
    if trainer.is_world_process_zero():
        result = {"world_size": args.world_size, "weights": weights, "initial": initial, "sharded": is_sharded(trainer.model)}
        torch.save(result, out_path)


def main_from_argv(argv: list[str]) -> None:
    """``OUT GLOBAL_BATCH METHOD [MODE OUTPUT_DIR]``; METHOD may be several, comma-separated (run in turn, straight),
    when OUT is a folder that receives ``<method>.pt`` each."""
    out, global_batch, methods, *rest = argv
    if "," not in methods:
        main(out, int(global_batch), methods, *rest)
        return
    for method in methods.split(","):
        main(os.path.join(out, f"{method}.pt"), int(global_batch), method)


if __name__ == "__main__":
    main_from_argv(sys.argv[1:])
