"""Run by test_distributed.py under torchrun: MUDMAN on a tiny model, final target weights saved by rank 0.

    python tests/distributed_mudman.py OUT.pt GLOBAL_BATCH   (one process)
    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 tests/distributed_mudman.py OUT.pt GLOBAL_BATCH
"""

import sys
import tempfile

import torch
from conftest import FORGET_TEXTS, RETAIN_TEXTS, char_tokenizer, tiny_llama, unlearn_config
from datasets import Dataset

from hf_unlearn import UnlearnTrainer


def main(out_path: str, global_batch: int) -> None:
    tokenizer = char_tokenizer()
    model = tiny_llama(len(tokenizer))
    with tempfile.TemporaryDirectory() as tmp:
        args = unlearn_config(tmp, max_steps=4, fork_every_n_loops=2, adv_decay=0.8, unlearning_rate=0.02)
        args.per_device_train_batch_size = global_batch // args.world_size
        trainer = UnlearnTrainer(
            model,
            args,
            forget_dataset=Dataset.from_dict({"text": FORGET_TEXTS}),
            retain_dataset=Dataset.from_dict({"text": RETAIN_TEXTS}),
            processing_class=tokenizer,
        )
        trainer.train()
    if trainer.is_world_process_zero():
        targets = trainer.target_parameters()
        weights = {name: p.detach().cpu() for name, p in targets.items()}
        torch.save({"world_size": args.world_size, "weights": weights}, out_path)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
