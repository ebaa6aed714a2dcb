"""Run by test_distributed.py: the evaluators and the trainers' evaluation losses on a tiny model, results
saved by the main process.

    python tests/distributed_eval.py OUT.pt
    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 tests/distributed_eval.py OUT.pt [fsdp]

``fsdp``: the model sharded with FSDP2's ``fully_shard`` (each decoder layer, then the whole model), the evaluators
only (the trainers' evaluation is test_fsdp.py's training runs').
"""

import sys
import tempfile

import torch
from accelerate import PartialState
from conftest import FORGET_TEXTS, RETAIN_TEXTS, char_tokenizer, full_batch, tiny_llama
from datasets import Dataset
from torch.distributed.fsdp import fully_shard

from hf_unlearn import RelearnAttackConfig, RelearnAttackTrainer
from hf_unlearn.evaluation import fact_accuracy, mcq_accuracy, mcq_letter_logits
from hf_unlearn.forward import is_sharded, lm_loss

# Odd sizes: the processes get unequal shares.
QUESTIONS = Dataset.from_list(
    [{"question": f"Question {i}?", "choices": ["w", "x", "y", "z"], "answer": i % 4} for i in range(7)]
)
FACTS = Dataset.from_list([{"prompt": f"Fact {i} is", "answer": f"v{i}"} for i in range(9)])
# Odd sizes and unequal lengths: batches of 2 weigh tokens unequally, and 2 processes get unequal shares.
EVAL_SETS = {"forget": Dataset.from_dict({"text": FORGET_TEXTS[:9]}), "retain": Dataset.from_dict({"text": RETAIN_TEXTS[:7]})}


def evaluation_losses(model, tokenizer) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        args = RelearnAttackConfig(output_dir=folder, per_device_eval_batch_size=2, max_steps=1, report_to="none", disable_tqdm=True)
        trainer = RelearnAttackTrainer(model, args, attack_dataset=EVAL_SETS["forget"], eval_dataset=EVAL_SETS, processing_class=tokenizer)
        return {key: value for key, value in trainer.evaluate().items() if key.endswith("_loss")}


def main(out_path: str, layout: str = "ddp") -> None:
    state = PartialState(cpu=not torch.cuda.is_available())  # as the Trainer does on a CPU machine
    tokenizer = char_tokenizer()
    model = tiny_llama(len(tokenizer))
    if layout == "fsdp":
        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
    results = {
        "world_size": state.num_processes,
        "sharded": is_sharded(model),
        "letter_logits": mcq_letter_logits(model, tokenizer, QUESTIONS, batch_size=2),
        "mcq": mcq_accuracy(model, tokenizer, QUESTIONS, batch_size=2),
        "facts": fact_accuracy(model, tokenizer, FACTS, batch_size=2),
    }
    if layout != "fsdp":
        results["losses"] = evaluation_losses(model, tokenizer)
        with torch.no_grad():  # the whole split in one batch: the token mean, directly
            results["direct"] = {f"eval_{name}_loss": lm_loss(model, full_batch(data, tokenizer))[0].item() for name, data in EVAL_SETS.items()}
    if state.is_main_process:
        torch.save(results, out_path)


if __name__ == "__main__":
    main(*sys.argv[1:])
