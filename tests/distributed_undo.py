"""Run by test_distributed.py: UNDO on a tiny model, the student's final weights saved by rank 0.

    python tests/distributed_undo.py OUT.pt GLOBAL_BATCH
    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 tests/distributed_undo.py OUT.pt GLOBAL_BATCH [fsdp]

``fsdp``: the student and the teacher sharded by FSDP2 (test_fsdp.py; tests/distributed_fsdp.py's test-only shim).

The distillation text mixes texts of different lengths, so the two processes' batches hold different numbers of
tokens: the loss must be the global batch's token mean, not the mean of each process's.
"""

import os
import sys
import tempfile

import torch
from conftest import FORGET_TEXTS, RETAIN_TEXTS, char_tokenizer, tiny_llama
from datasets import Dataset
from distributed_fsdp import FSDP_ENVIRONMENT, engage_fsdp_on_cpu

from hf_unlearn import UndoConfig, UndoTrainer
from hf_unlearn.forward import is_sharded
from hf_unlearn.gradients import full_value


def main(out_path: str, global_batch: int, layout: str = "ddp") -> None:
    if layout == "fsdp":
        os.environ.update(FSDP_ENVIRONMENT)
        engage_fsdp_on_cpu()
    tokenizer = char_tokenizer()
    unlearned = tiny_llama(len(tokenizer))
    texts = [text * (1 + i % 3) for i, text in enumerate(t for pair in zip(RETAIN_TEXTS, FORGET_TEXTS) for t in pair)]
    with tempfile.TemporaryDirectory() as tmp:
        args = UndoConfig(
            output_dir=tmp, max_steps=3, warmup_steps=0, learning_rate=1e-2, noise_alpha=0.3, distill_tolerance=None, eval_strategy="no",
            save_strategy="no", report_to="none", disable_tqdm=True, seed=0, max_length=64,
        )  # fmt: skip
        args.per_device_train_batch_size = global_batch // args.world_size
        trainer = UndoTrainer(unlearned, args, train_dataset=Dataset.from_dict({"text": texts}), processing_class=tokenizer)
        noised = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
        trainer.train()
    weights = {name: full_value(p.detach()).cpu() for name, p in trainer.model.named_parameters()}  # every process: FSDP gathers
    if trainer.is_world_process_zero():
        result = {"world_size": args.world_size, "weights": weights, "initial": noised, "sharded": is_sharded(trainer.model) and is_sharded(trainer.teacher)}
        torch.save(result, out_path)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:])
