"""Unlearn a forget set with UnlearnTrainer; the method and every knob come from the config.

    python recipes/unlearn.py --config mudman_smollm2_code
    accelerate launch --num_processes 2 recipes/unlearn.py --config mudman_smollm2_code
    python recipes/unlearn.py --method npo --npo_beta 0.2 --max_steps 50

The same as ``hf-unlearn unlearn`` (``hf_unlearn.cli``). Command-line flags override the YAML
(`--unlearning_rate 1e-3`); `method` (YAML or `--method`) picks the config class, so each method's
own fields parse (`--npo_beta`, `--rmu_layer`, ...) and `--method cir --help` lists CIR's. Any
`TrainingArguments` field works too (`--report_to wandb`, `--push_to_hub`, `--resume_from_checkpoint`),
and TRL's model flags (`--dtype bfloat16`, `--use_peft --lora_r 16`). The unlearned model and its
tokenizer are saved to `output_dir`.
"""

import sys

from hf_unlearn.cli import run_command

if __name__ == "__main__":
    run_command("unlearn", sys.argv[1:])
