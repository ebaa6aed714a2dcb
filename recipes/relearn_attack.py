"""Relearning attack on an unlearned model: fine-tune on the forget data's attack split, measure recovery.

    python recipes/relearn_attack.py --config recipes/configs/relearn_attack_smollm2_python.yaml \
        --model_name_or_path outputs/mudman_smollm2_python

Use the same data section as the unlearning run: the splits are rebuilt deterministically, so the
attack trains on chunks the unlearning never saw and is measured on chunks nobody trained on.
Writes the recovery curve and the attacker's best point to `<output_dir>/attack.json`.
"""

from __future__ import annotations

import json
from pathlib import Path

from trl import TrlParser

from hf_unlearn import RelearnAttackConfig, RelearnAttackTrainer
from hf_unlearn.data import DataArguments
from unlearn import ModelArguments, load_model_and_data


def main(model_args: ModelArguments, data_args: DataArguments, config: RelearnAttackConfig) -> dict:
    model_path, model, tokenizer, data = load_model_and_data(model_args, data_args)
    trainer = RelearnAttackTrainer(
        model,
        config,
        attack_dataset=data["attack"],
        eval_dataset=data["eval"],
        processing_class=tokenizer,
    )
    trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    result = {"model": model_path, "curve": trainer.attack_curve(), "best": trainer.best_point()}
    if trainer.is_world_process_zero():
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(config.output_dir) / "attack.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result["best"], indent=2))
    return result


if __name__ == "__main__":
    main(*TrlParser((ModelArguments, DataArguments, RelearnAttackConfig)).parse_args_and_config())
