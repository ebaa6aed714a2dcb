"""Run by test_distributed.py: an unlearning method on a tiny model, final target weights saved by rank 0.

    python tests/distributed_unlearn.py OUT.pt GLOBAL_BATCH METHOD
    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 tests/distributed_unlearn.py OUT.pt GLOBAL_BATCH METHOD
"""

import sys
import tempfile

import torch
from conftest import FORGET_TEXTS, RETAIN_TEXTS, char_tokenizer, tiny_llama, unlearn_config
from datasets import Dataset

from hf_unlearn import CIRConfig, UnlearnTrainer

SETTINGS = {
    # 4 loops across a re-fork, with adversary decay
    "mudman": dict(max_steps=4, fork_every_n_loops=2, adv_decay=0.8, unlearning_rate=0.02),
    # 24 forget texts at batch 8: epoch 0 collects statistics (gathered from both processes), epoch 1 updates
    "cir": dict(
        config_class=CIRConfig, max_steps=6, loss_layers=[0, 1], retain_layer=2, act_components=2, grad_components=2,
        pca_niter=4, step_norm=0.5, retaining_rate=1e-3, disruption_budget=None, eval_strategy="no", eval_on_start=False,
    ),
}  # fmt: skip


def main(out_path: str, global_batch: int, method: str) -> None:
    tokenizer = char_tokenizer()
    model = tiny_llama(len(tokenizer))
    with tempfile.TemporaryDirectory() as tmp:
        args = unlearn_config(tmp, **SETTINGS[method])
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
        weights = {name: p.detach().cpu() for name, p in trainer.target_parameters().items()}
        torch.save({"world_size": args.world_size, "weights": weights}, out_path)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
