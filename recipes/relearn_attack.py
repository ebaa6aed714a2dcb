"""Relearning attacks on an unlearned model: an attack suite fine-tunes on the forget data's attack split.

    python recipes/relearn_attack.py --config recipes/configs/relearn_attack_smollm2_python.yaml \
        --model_name_or_path outputs/mudman_smollm2_python [--attack_suite standard] [--baseline_model embedded]

Use the same data section as the unlearning run: the splits are rebuilt deterministically, so the
attacks train on documents the unlearning never saw and are measured on documents nobody trained
on. ``--attack_suite`` picks a preset (``quick``, ``standard``, ``paper``; see
``hf_unlearn.attacks``): every attack runs on a fresh copy of the model, and the result is the
attacker's best over all of them. Settings given in the YAML or on the command line that differ
from ``RelearnAttackConfig``'s defaults apply to every attack of the suite (``--max_steps 30``
shortens them all). ``--attack_suite none`` runs the single attack those settings describe.
Writes every curve and the attacker's best point to ``<output_dir>/attack_suite.json``; with
``--baseline_model`` (a model path, or ``embedded``) the same suite attacks that model too and a
RobustnessReport is written beside it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoModelForCausalLM
from trl import TrlParser
from unlearn import ModelArguments, load_model_and_data

from hf_unlearn import AttackSuite, RelearnAttackConfig
from hf_unlearn.attacks import PRESETS
from hf_unlearn.data import DataArguments
from hf_unlearn.embedded_model import resolve_model_name_or_path
from hf_unlearn.evaluation.report import finite_or_null
from hf_unlearn.pipeline import robustness_report


@dataclass
class AttackArguments:
    attack_suite: str = field(
        default="standard", metadata={"help": f"Attack suite preset ({', '.join(PRESETS)}), or 'none' for one attack."}
    )
    baseline_model: str | None = field(
        default=None, metadata={"help": "Also attack this model (e.g. the one before unlearning, 'embedded') and write a report."}
    )


def suite_from(args: AttackArguments, config: RelearnAttackConfig) -> AttackSuite:
    """The chosen preset, with every setting of ``config`` that differs from the defaults applied to each attack."""
    if args.attack_suite == "none":
        return AttackSuite({"attack": config})
    defaults = RelearnAttackConfig(output_dir=config.output_dir)
    common = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(RelearnAttackConfig)
        if f.init and getattr(config, f.name) != getattr(defaults, f.name)
    }
    return AttackSuite.preset(args.attack_suite, output_dir=config.output_dir, **common)


def main(model_args: ModelArguments, data_args: DataArguments, config: RelearnAttackConfig, args: AttackArguments) -> dict:
    model_path, model, tokenizer, data = load_model_and_data(model_args, data_args)
    suite = suite_from(args, config)
    inputs = dict(attack_dataset=data["attack"], eval_dataset=data["eval"], processing_class=tokenizer)
    if suite.needs_retain:
        inputs["retain_dataset"] = data["retain"]
    result = suite.in_folder("attacked").run(model, **inputs)
    output = {"model": model_path, "attack_suite": args.attack_suite, "best": result.best_point(), **result.to_dict()}
    if args.baseline_model is not None:
        baseline = AutoModelForCausalLM.from_pretrained(resolve_model_name_or_path(args.baseline_model))
        report = robustness_report(
            f"Relearning attacks on {model_path}", {"attacked": model, "no_unlearning": baseline}, suite,
            details={"model": model_path, "baseline": args.baseline_model, "data": dataclasses.asdict(data_args)}, resume=True, **inputs,
        )  # fmt: skip
    if config.should_save:
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(config.output_dir) / "attack_suite.json").write_text(json.dumps(finite_or_null(output), indent=2, allow_nan=False))
        if args.baseline_model is not None:
            report.save(config.output_dir)
        print(json.dumps(output["best"], indent=2))
    return output


if __name__ == "__main__":
    main(*TrlParser((ModelArguments, DataArguments, RelearnAttackConfig, AttackArguments)).parse_args_and_config())
