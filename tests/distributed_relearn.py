"""Run by test_fsdp.py: a relearning attack (a full fine-tune of the tiny model) under DDP or FSDP2, its attack curve
and final weights saved by the main process.

    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 tests/distributed_relearn.py OUT.pt ddp|fsdp [lora]
"""

import os
import sys
import tempfile

import torch
from conftest import FORGET_TEXTS, RETAIN_TEXTS, char_tokenizer, tiny_llama
from datasets import Dataset
from distributed_fsdp import FSDP_ENVIRONMENT, engage_fsdp_on_cpu

from hf_unlearn import RelearnAttackConfig, RelearnAttackTrainer
from hf_unlearn.forward import is_sharded
from hf_unlearn.gradients import full_value


def main(out_path: str, layout: str, adapter: str = "") -> None:
    if layout == "fsdp":
        os.environ.update(FSDP_ENVIRONMENT)
        engage_fsdp_on_cpu()
    tokenizer = char_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        args = RelearnAttackConfig(
            output_dir=tmp, max_steps=4, per_device_train_batch_size=2, eval_steps=2, learning_rate=0.05,
            save_strategy="no", report_to="none", disable_tqdm=True, seed=0, use_peft=adapter == "lora",
        )  # fmt: skip
        trainer = RelearnAttackTrainer(
            tiny_llama(len(tokenizer)), args, attack_dataset=Dataset.from_dict({"text": FORGET_TEXTS[:12]}),
            eval_dataset={"forget": Dataset.from_dict({"text": FORGET_TEXTS[12:]}), "retain": Dataset.from_dict({"text": RETAIN_TEXTS})},
            processing_class=tokenizer,
        )  # fmt: skip
        trainer.train()
    weights = {name: full_value(p.detach()).cpu() for name, p in trainer.model.named_parameters()}
    if trainer.is_world_process_zero():
        result = {"world_size": args.world_size, "sharded": is_sharded(trainer.model), "curve": trainer.attack_curve(), "weights": weights}
        torch.save(result, out_path)


if __name__ == "__main__":
    main(*sys.argv[1:])
