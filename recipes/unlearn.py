"""Unlearn a forget set with UnlearnTrainer; the method and every knob come from the config.

    python recipes/unlearn.py --config recipes/configs/mudman_smollm2_python.yaml
    accelerate launch --num_processes 2 recipes/unlearn.py --config recipes/configs/mudman_smollm2_python.yaml

Command-line flags override the YAML (`--unlearning_rate 1e-3`). Any `UnlearnConfig` /
`TrainingArguments` field works: `--report_to wandb`, `--push_to_hub`, `--resume_from_checkpoint`.
The unlearned model and tokenizer are saved to `output_dir`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import TrlParser

from hf_unlearn import UnlearnConfig, UnlearnTrainer
from hf_unlearn.data import DataArguments, build_unlearning_data
from hf_unlearn.models import resolve_model_name_or_path


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Model to unlearn (Hub id or folder); default: the embedded SmolLM2-135M-Instruct."}
    )


def main(model_args: ModelArguments, data_args: DataArguments, config: UnlearnConfig) -> UnlearnTrainer:
    model_path = resolve_model_name_or_path(model_args.model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    data = build_unlearning_data(data_args, tokenizer)
    trainer = UnlearnTrainer(
        AutoModelForCausalLM.from_pretrained(model_path),
        config,
        forget_dataset=data["unlearn"],
        retain_dataset=data["retain"],
        eval_dataset=data["eval"],
        processing_class=tokenizer,
    )
    trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    trainer.save_model(config.output_dir)
    metrics = trainer.evaluate()
    if trainer.is_world_process_zero():
        print(metrics)
    if config.push_to_hub:
        trainer.push_to_hub()
    return trainer


if __name__ == "__main__":
    main(*TrlParser((ModelArguments, DataArguments, UnlearnConfig)).parse_args_and_config())
