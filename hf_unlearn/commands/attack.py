"""``hf-unlearn attack``: the attack suite on a model, on the data it was unlearned on."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..attacks import ATTACK_KINDS, PRESETS, AttackSuite
from ..attacks.presets import check_preset_choice
from ..attacks.relearn_config import RelearnAttackConfig
from ..evaluation.report import finite_or_null
from ..model_card import (
    INFO_FILE,
)
from ..models import load_model
from ..pipeline import attack, robustness_report
from ..scenarios import ScenarioArguments
from .common import (
    ModelArguments,
    Parser,
    given_settings,
    parser_for,
    recorded_baseline,
    run_data,
    with_model_folder,
)


@dataclass
class AttackArguments:
    attack_suite: str = field(
        default="standard", metadata={"help": f"Attack suite preset ({', '.join(PRESETS)}), or 'none' for the one attack the flags describe."}
    )
    baseline_model: str | None = field(
        default=None, metadata={"help": "Also attack this model (e.g. the one before unlearning, 'embedded') and write a report."}
    )

    def __post_init__(self):
        check_preset_choice(self.attack_suite, others=("none",))


def suite_from(args: AttackArguments, config: RelearnAttackConfig, metric: str) -> AttackSuite:
    """The chosen preset, with every setting of ``config`` that differs from the defaults applied to each attack;
    the attacker optimises the scenario's ``metric`` unless ``--metric_for_best_model`` says otherwise."""
    defaults = RelearnAttackConfig(output_dir=config.output_dir)
    if config.metric_for_best_model == defaults.metric_for_best_model and metric != config.metric_for_best_model:
        config = dataclasses.replace(config, metric_for_best_model=metric, greater_is_better=None)  # inferred from the name
    if args.attack_suite == "none":
        return AttackSuite({"attack": config})
    common = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(RelearnAttackConfig)
        if f.init and getattr(config, f.name) != getattr(defaults, f.name)
    }
    # The preset decides each attack's kind, and the settings of a kind other than the default one describe one attack
    # (quantize_bits: int8 or int4): applied to all, they would turn every attack of that kind into one. The default
    # kind's settings (use_peft) apply to every attack of it.
    per_attack = {"kind", *(name for kind in ATTACK_KINDS.values() if kind.name != defaults.kind for name in kind.settings)}
    kind_settings = sorted(set(common) & per_attack)
    if kind_settings:
        raise ValueError(f"--{', --'.join(kind_settings)} describe one attack: give them with --attack_suite none")
    return AttackSuite.preset(args.attack_suite, output_dir=config.output_dir, **common)


def run_attack(
    model_args: ModelArguments, data_args: ScenarioArguments, config: RelearnAttackConfig, args: AttackArguments, given_names: set[str] | None = None
) -> dict:
    """The attack suite on the model (and on ``baseline_model``): ``attack_suite.json`` (and a report) in ``output_dir``.
    A model folder written by ``hf-unlearn unlearn`` is attacked on the data it was unlearned on, as ``evaluate`` does."""
    model_path, model, tokenizer = load_model(model_args.model_name_or_path, model_args.dtype)
    data_args, _, recorded = run_data(model_path, data_args, given_names, "attack")
    untouched = None
    if data_args.knows_facts:  # the facts the model knew before unlearning: its baseline's, else its own
        untouched = model if recorded is None else load_model(recorded_baseline(recorded, Path(model_path) / INFO_FILE), model_args.dtype)[1]
    scenario = data_args.build(tokenizer, untouched)
    suite = suite_from(args, config, scenario.best_metric)
    result = attack(model, suite.in_folder("attacked"), scenario, tokenizer, resume=True)  # finished attacks are read back
    output = {"model": model_path, "data": dataclasses.asdict(data_args), "attack_suite": args.attack_suite, "best": result.best_point(), **result.to_dict()}
    report = None
    if args.baseline_model is not None:
        _, baseline, _ = load_model(args.baseline_model, model_args.dtype)
        report = robustness_report(
            f"Relearning attacks on {model_path}", {"attacked": model, "no_unlearning": baseline}, suite,
            attack_dataset=scenario.attack, eval_dataset=scenario.eval, evaluators=scenario.evaluators, processing_class=tokenizer,
            retain_dataset=scenario.retain, details={"model": model_path, "baseline": args.baseline_model, "data": dataclasses.asdict(data_args)},
            resume=True,
        )  # fmt: skip
    if config.should_save:
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(config.output_dir) / "attack_suite.json").write_text(json.dumps(finite_or_null(output), indent=2, allow_nan=False))
        if report is not None:
            report.save(config.output_dir)
        print(json.dumps(finite_or_null(output["best"]), indent=2))
        print(f"\nEvery attack's curve: {Path(config.output_dir) / 'attack_suite.json'}")
    return output


def make_parser() -> Parser:
    return parser_for(
        (ModelArguments, ScenarioArguments, RelearnAttackConfig, AttackArguments),
        "Attacks on a model (fine-tuning on the forget data's attack split, and those that train nothing), measure what "
        "comes back. A folder written by `hf-unlearn unlearn` is attacked on the data it was unlearned on (its "
        "unlearning_info.json); data flags given here override it, with a warning. Another model: on the flags' data.",
        "attack",
        usage="hf-unlearn attack [MODEL_FOLDER] [--attack_suite PRESET] [other flags below]",
    )


def main(argv: Sequence[str]) -> dict:
    argv = with_model_folder(argv)
    return run_attack(*make_parser().parse_args_and_config(argv), given_settings(argv))
