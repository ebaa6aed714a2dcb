"""Unlearn a forget set with UnlearnTrainer; the method and every knob come from the config.

    python recipes/unlearn.py --config recipes/configs/mudman_smollm2_python.yaml
    accelerate launch --num_processes 2 recipes/unlearn.py --config recipes/configs/mudman_smollm2_python.yaml
    python recipes/unlearn.py --method npo --npo_beta 0.2 --max_steps 50

Command-line flags override the YAML (`--unlearning_rate 1e-3`). `method` (YAML or `--method`)
picks the config class, so each method's own fields parse (`--npo_beta`, `--rmu_layer`, ...).
Any `TrainingArguments` field works too: `--report_to wandb`, `--push_to_hub`,
`--resume_from_checkpoint`. The unlearned model and tokenizer are saved to `output_dir`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from trl import TrlParser

from hf_unlearn import UnlearnConfig, UnlearnTrainer, get_method
from hf_unlearn.data import DataArguments, build_unlearning_data
from hf_unlearn.embedded_model import resolve_model_name_or_path


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Model to unlearn (Hub id or folder); default: the embedded SmolLM2-135M-Instruct."}
    )


def method_config_class(argv: list[str]) -> type[UnlearnConfig]:
    """The config class of the method named by ``--method`` (or ``--method=``), else by the YAML's ``method``."""
    method = None
    for i, arg in enumerate(argv):
        if arg == "--method" and i + 1 < len(argv):
            method = argv[i + 1]
        elif arg.startswith("--method="):
            method = arg.split("=", 1)[1]
    if method is None and "--config" in argv:
        with open(argv[argv.index("--config") + 1]) as config_file:
            method = (yaml.safe_load(config_file) or {}).get("method")
    return get_method(method or "mudman").config


def parse_args(argv: list[str]) -> tuple[ModelArguments, DataArguments, UnlearnConfig]:
    return TrlParser((ModelArguments, DataArguments, method_config_class(argv))).parse_args_and_config(argv)


def load_model_and_data(
    model_args: ModelArguments, data_args: DataArguments
) -> tuple[str, PreTrainedModel, PreTrainedTokenizerBase, dict]:
    """The model's resolved path, the model, its tokenizer and the unlearning splits (shared with the attack recipe)."""
    model_path = resolve_model_name_or_path(model_args.model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    data = build_unlearning_data(data_args, tokenizer)
    return model_path, AutoModelForCausalLM.from_pretrained(model_path), tokenizer, data


def main(model_args: ModelArguments, data_args: DataArguments, config: UnlearnConfig) -> UnlearnTrainer:
    _, model, tokenizer, data = load_model_and_data(model_args, data_args)
    trainer = UnlearnTrainer(
        model,
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
    main(*parse_args(sys.argv[1:]))
