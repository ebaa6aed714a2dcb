"""Run by test_distributed.py: the evaluators on a tiny model, results saved by the main process.

    python tests/distributed_eval.py OUT.pt
    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 tests/distributed_eval.py OUT.pt
"""

import sys

import torch
from accelerate import PartialState
from conftest import char_tokenizer, tiny_llama
from datasets import Dataset

from hf_unlearn.evaluation import fact_accuracy, mcq_accuracy, mcq_letter_logits

# Odd sizes: the processes get unequal shares.
QUESTIONS = Dataset.from_list(
    [{"question": f"Question {i}?", "choices": ["w", "x", "y", "z"], "answer": i % 4} for i in range(7)]
)
FACTS = Dataset.from_list([{"prompt": f"Fact {i} is", "answer": f"v{i}"} for i in range(9)])


def main(out_path: str) -> None:
    state = PartialState(cpu=not torch.cuda.is_available())  # as the Trainer does on a CPU machine
    tokenizer = char_tokenizer()
    model = tiny_llama(len(tokenizer))
    results = {
        "world_size": state.num_processes,
        "letter_logits": mcq_letter_logits(model, tokenizer, QUESTIONS, batch_size=2),
        "mcq": mcq_accuracy(model, tokenizer, QUESTIONS, batch_size=2),
        "facts": fact_accuracy(model, tokenizer, FACTS, batch_size=2),
    }
    if state.is_main_process:
        torch.save(results, out_path)


if __name__ == "__main__":
    main(sys.argv[1])
