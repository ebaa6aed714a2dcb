"""Run by test_fsdp.py: the `quick` attack suite (LoRA and AdamW fine-tuning, 4-bit quantization) on the tiny model,
in one process or under FSDP2 on two; the suite's results saved by the main process.

    python tests/distributed_suite.py OUT.pt single
    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 tests/distributed_suite.py OUT.pt fsdp
"""

import os
import sys
import tempfile

import torch
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType
from conftest import FORGET_TEXTS, RETAIN_TEXTS, char_tokenizer, tiny_llama
from datasets import Dataset
from distributed_fsdp import FSDP_ENVIRONMENT, engage_fsdp_on_cpu

from hf_unlearn import AttackSuite

GLOBAL_BATCH = 4


def main(out_path: str, layout: str) -> None:
    if layout == "fsdp":
        os.environ.update(FSDP_ENVIRONMENT)
        engage_fsdp_on_cpu()
    tokenizer = char_tokenizer()
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    with tempfile.TemporaryDirectory() as tmp:
        suite = AttackSuite.preset(
            "quick", output_dir=tmp, max_steps=4, eval_steps=2, per_device_train_batch_size=GLOBAL_BATCH // processes,
            report_to="none", disable_tqdm=True, seed=0, text_samples=0,
        )  # fmt: skip
        result = suite.run(
            tiny_llama(len(tokenizer)), attack_dataset=Dataset.from_dict({"text": FORGET_TEXTS[:12]}),
            eval_dataset={"forget": Dataset.from_dict({"text": FORGET_TEXTS[12:]}), "retain": Dataset.from_dict({"text": RETAIN_TEXTS})},
            processing_class=tokenizer,
        )  # fmt: skip
    if int(os.environ.get("RANK", "0")) == 0:
        sharded = AcceleratorState().distributed_type == DistributedType.FSDP
        torch.save({"world_size": processes, "sharded": sharded, "suite": result.to_dict()}, out_path)


if __name__ == "__main__":
    main(*sys.argv[1:])
