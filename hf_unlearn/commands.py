"""The ``hf-unlearn`` commands (``hf_unlearn.cli`` dispatches to them): unlearn, attack, sweep, evaluate.

Every command takes YAML configs (``--config``) and command-line flags (``TrlParser``) and runs
under ``accelerate launch``. ``recipes/*.py`` are thin wrappers over the same functions.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from datasets import Dataset
from transformers import PreTrainedTokenizerBase
from trl import ModelConfig, TrlParser, get_peft_config

from .attacks import ATTACK_KINDS, PRESETS, AttackSuite
from .attacks.inputs import tokenized
from .attacks.presets import check_preset_choice
from .attacks.relearn_config import RelearnAttackConfig
from .data import DataArguments
from .data.sources import QA_TEMPLATE
from .evaluation.evaluators import Evaluator, HarnessEvaluator, check_harness_tasks
from .evaluation.muse import MUSEEvaluator
from .evaluation.report import RobustnessReport, finite_or_null
from .evaluation.tofu import TOFUEvaluator
from .forward import weights_digest
from .methods import available_methods, get_method
from .model_card import (
    INFO_FILE,
    REPORT_NAME,
    UnlearningInfo,
    base_model_name,
    is_hub_id,
    model_card,
    saved_weights_digest,
)
from .models import EMBEDDED_HUB_ID, load_model, resolve_model_name_or_path
from .pipeline import attack, robustness_report, unlearn
from .scenarios import Scenario, ScenarioArguments, fictitious_tofu_evaluator, scenario_arguments
from .sweep import SweepArguments, run_sweep
from .tracking import group_name
from .undo import UndoConfig, UndoTrainer
from .unlearn_config import UnlearnConfig

BENCHMARKS = ("tofu", "muse")
CONFIG_HELP = (
    "A YAML file of any of the flags below, or the name of a config shipped with hf_unlearn (mudman_smollm2_code, "
    "relearn_attack_smollm2_code); command-line flags override it."
)


SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"


def config_path(value: str, flag: str = "--config") -> str:
    """A ``--config`` value (or ``flag``'s): a YAML file, or the name of a config shipped with the package
    (``mudman_smollm2_code``); a file that sets a key twice is refused."""
    if Path(value).is_file():
        return check_unique_keys(value)
    shipped = SHIPPED_CONFIGS / (value if value.endswith((".yaml", ".yml")) else f"{value}.yaml")
    if shipped.is_file():
        return check_unique_keys(str(shipped))
    names = ", ".join(sorted(path.stem for path in SHIPPED_CONFIGS.glob("*.yaml")))
    raise FileNotFoundError(f"{flag} {value}: no such file, and no shipped config of that name (shipped: {names})")


def check_unique_keys(path: str) -> str:
    """``path``, once no mapping in the YAML file sets a key twice: YAML readers keep the last value without a word."""

    def check(node: yaml.Node) -> None:
        if isinstance(node, yaml.MappingNode):
            lines: dict[str, int] = {}
            for key, value in node.value:
                if key.value in lines:
                    raise ValueError(
                        f"--config {path} sets {key.value} twice (lines {lines[key.value]} and {key.start_mark.line + 1}): keep one"
                    )
                lines[key.value] = key.start_mark.line + 1
                check(value)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                check(item)

    root = yaml.compose(Path(path).read_text(), Loader=yaml.SafeLoader)
    if root is not None:
        check(root)
    return path


def with_config_path(args: Sequence[str]) -> list[str]:
    """``args`` with the ``--config`` value resolved by ``config_path``; ``--config=X`` becomes ``--config X``,
    the only form TrlParser reads (the other would be accepted by argparse and silently ignored)."""
    resolved, args = [], list(args)
    while args:
        arg = args.pop(0)
        if arg == "--config" and args:
            resolved += ["--config", config_path(args.pop(0))]
        elif arg.startswith("--config="):
            resolved += ["--config", config_path(arg.split("=", 1)[1])]
        else:
            resolved.append(arg)
    return resolved


def with_negative_numbers_attached(args: Sequence[str]) -> list[str]:
    """``--flag -1e-5`` as ``--flag=-1e-5``: argparse reads a value that starts with "-" and is not a plain integer or
    decimal as the next flag, and fails with "expected one argument" after printing the whole usage."""
    attached, args = [], list(args)
    while args:
        arg = args.pop(0)
        if arg.startswith("--") and "=" not in arg and args and args[0].startswith("-") and _is_number(args[0]):
            attached.append(f"{arg}={args.pop(0)}")
        else:
            attached.append(arg)
    return attached


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class Parser(TrlParser):
    """``TrlParser`` whose ``--help`` works for every method and lists ``--config`` (which TrlParser reads
    before argparse sees it); no abbreviated flags (``--max_step`` would silently be ``--max_steps``), negative
    numbers after a space, and settings no dataclass reads named with the methods that have them."""

    def __init__(self, dataclass_types: Sequence[type], description: str, command: str, usage: str | None = None):
        super().__init__(dataclass_types, description=description, prog=f"hf-unlearn {command}", usage=usage, allow_abbrev=False)
        self.add_argument("--config", metavar="YAML", help=CONFIG_HELP)
        self.command = command
        for action in self._actions:  # argparse formats help strings with %: "+0.1 %" must not break --help
            if action.help:
                action.help = action.help.replace("%", "%%")

    def parse_args_and_config(self, args: Sequence[str] | None = None, **kwargs) -> tuple:
        args = with_negative_numbers_attached(with_config_path(sys.argv[1:] if args is None else args))
        try:
            outputs = super().parse_args_and_config(args, **kwargs)
        except ValueError as error:
            if "not used by the HfArgumentParser" not in str(error):
                raise
            raise ValueError(self.unread_settings_message(str(error))) from error
        return tuple(output for output in outputs if dataclasses.is_dataclass(output))  # not the --config namespace

    def unread_settings_message(self, message: str) -> str:
        """HfArgumentParser's "Some specified arguments are not used" as one line naming each setting and who reads it."""
        names = re.findall(r"--([A-Za-z0-9_]+)", message) or re.findall(r"'([A-Za-z0-9_]+)'", message)
        method = next((t for t in self.dataclass_types if issubclass(t, UnlearnConfig)), None)
        parts = []
        for name in names or [message]:
            owners = [m for m in available_methods() if name in {f.name for f in dataclasses.fields(get_method(m).config)}]
            close = difflib.get_close_matches(f"--{name}", [o for a in self._actions for o in a.option_strings if o.startswith("--")], n=1)
            where = ("every method has it" if len(owners) == len(available_methods()) else f"it belongs to {', '.join(owners)}" if owners
                     else f"did you mean {close[0]}?" if close else "no method has it")  # fmt: skip
            subject = f"method {method.__dataclass_fields__['method'].default!r}" if method else f"hf-unlearn {self.command}"
            parts.append(f"--{name} is not a setting of {subject} ({where})")
        return "; ".join(parts) + f": remove it, or see hf-unlearn {self.command} --help"


def with_model_folder(argv: Sequence[str]) -> list[str]:
    """``hf-unlearn <command> FOLDER [flags]``: a first argument that is no flag names the model (``--model_name_or_path``)."""
    argv = list(argv)
    return ["--model_name_or_path", argv[0], *argv[1:]] if argv and not argv[0].startswith("-") else argv


def parser_for(dataclass_types: Sequence[type], description: str, command: str, usage: str | None = None) -> Parser:
    """The parser of ``hf-unlearn <command>``."""
    return Parser(dataclass_types, description, command, usage)


def check_hub_access(flag: str) -> None:
    """Before any work, for ``--push_to_hub``: the Hub answers and knows the user. Otherwise the push would fail
    at the end (or, in transformers' Trainer, at the start), in a traceback that names neither cause nor fix."""
    from huggingface_hub import HfApi, constants

    try:
        HfApi().whoami()
    except Exception as error:
        raise ValueError(
            f"{flag}: the Hub at {constants.ENDPOINT} did not answer as the logged-in user ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}). Log in (`hf auth login`, or set HF_TOKEN), check the "
            f"network (HF_HUB_OFFLINE must not be 1), or drop {flag}"
        ) from error


# --- unlearn ----------------------------------------------------------------------------------------


def method_config_class(argv: Sequence[str]) -> type[UnlearnConfig]:
    """The config class of the method named by ``--method`` (or ``--method=``), else by the YAML's ``method``."""
    method = None
    for i, arg in enumerate(argv):
        if arg == "--method" and i + 1 < len(argv):
            method = argv[i + 1]
        elif arg.startswith("--method="):
            method = arg.split("=", 1)[1]
    argv = with_config_path(argv)
    if method is None and "--config" in argv:
        with open(argv[argv.index("--config") + 1]) as config_file:
            method = (yaml.safe_load(config_file) or {}).get("method")
    return get_method(method or "mudman").config


@dataclass
class ChainArguments:
    then_distill: str | None = field(
        default=None,
        metadata={"help": "Then UNDO, in the same command: `hf-unlearn distill OUTPUT_DIR` on the saved model, with the settings "
                  "of this YAML file or shipped config (undo_smollm2; 'defaults': UndoConfig's), the student in OUTPUT_DIR_undo."},  # fmt: skip
    )


def unlearn_parser(argv: Sequence[str]) -> TrlParser:
    config_class = method_config_class(argv)
    description = (
        f"Unlearn a forget set with UnlearnTrainer. Methods: {', '.join(available_methods())} (--method picks one; the flags "
        f"shown are those of {config_class.__name__}, the config of '{config_class.__dataclass_fields__['method'].default}')."
    )
    return parser_for((ModelConfig, ScenarioArguments, config_class, ChainArguments), description, "unlearn")


def run_unlearn(model_config: ModelConfig, data_args: ScenarioArguments, config: UnlearnConfig, chain: ChainArguments | None = None):
    """Unlearn, save the model (and its card) to ``output_dir``, evaluate, push when asked; then UNDO, when asked."""
    if chain is not None and chain.then_distill not in (None, "defaults"):
        config_path(chain.then_distill, "--then_distill")  # before unlearning, not after
    get_method(config.method).check_args(config)  # before the model loads (the trainer checks it again)
    if config.push_to_hub:
        check_hub_access("--push_to_hub")
    _, model, tokenizer = load_model(model_config.model_name_or_path, model_config.dtype)
    scenario = data_args.build(tokenizer, model)
    trainer = unlearn(model, config, scenario, tokenizer, peft_config=get_peft_config(model_config))
    metrics = trainer.final_metrics()  # the last step's evaluation, unless the weights changed since
    trainer.save_model(config.output_dir)  # with the card and unlearning_info.json
    if config.push_to_hub:
        trainer.push_to_hub()
    if trainer.is_world_process_zero():
        print(json.dumps(finite_or_null(metrics), indent=2))
        print(
            f"\nThe unlearned model ({trainer.args.world_size} process{'es' if trainer.args.world_size > 1 else ''}) is in "
            f"{config.output_dir}. Measure its robustness against the attack suite (on the data it was "
            f"unlearned on, recorded in {INFO_FILE}) with:\n"
            f"  hf-unlearn evaluate {config.output_dir}"
        )
    if chain is not None and chain.then_distill is not None:
        trainer.accelerator.wait_for_everyone()  # the folder is written whole before any process reads it
        return distill_command([config.output_dir, *([] if chain.then_distill == "defaults" else ["--config", chain.then_distill])])
    return trainer


def unlearn_command(argv: Sequence[str]):
    return run_unlearn(*unlearn_parser(argv).parse_args_and_config(list(argv)))


# --- attack -----------------------------------------------------------------------------------------


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "The model (Hub id or folder); default: the embedded SmolLM2-135M-Instruct."}
    )
    dtype: str = field(
        default="float32",
        metadata={"help": "Weights' dtype. Attacks fine-tune them, so half precision (which rounds their updates away) is refused "
                  "unless they train a LoRA adapter: for speed keep float32 and add --bf16 (autocast)."},  # fmt: skip
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


def attack_command(argv: Sequence[str]) -> dict:
    argv = with_model_folder(argv)
    parser = parser_for(
        (ModelArguments, ScenarioArguments, RelearnAttackConfig, AttackArguments),
        "Attacks on a model (fine-tuning on the forget data's attack split, and those that train nothing), measure what "
        "comes back. A folder written by `hf-unlearn unlearn` is attacked on the data it was unlearned on (its "
        "unlearning_info.json); data flags given here override it, with a warning. Another model: on the flags' data.",
        "attack",
        usage="hf-unlearn attack [MODEL_FOLDER] [--attack_suite PRESET] [other flags below]",
    )
    return run_attack(*parser.parse_args_and_config(argv), given_settings(argv))


# --- distill (UNDO) -------------------------------------------------------------------------------


@dataclass
class DistillArguments:
    model_name_or_path: str = field(metadata={"help": "The unlearned model, the teacher (a folder written by `hf-unlearn unlearn`, or a Hub id)."})
    dtype: str = field(default="float32", metadata={"help": "Weights' dtype (the student trains: keep float32; --bf16 for autocast)."})


def distillation_text(scenario: Scenario, tokenizer: PreTrainedTokenizerBase, seed: int) -> Dataset:
    """What UNDO distills on, as the authors mix it: the scenario's retain text and its forget-domain text, alternated
    (their language run: 50/50), so the student also copies the teacher's unlearned outputs on the forget domain."""
    from datasets import interleave_datasets

    parts = [tokenized(part, tokenizer).select_columns(["input_ids"]) for part in (scenario.retain, scenario.unlearn)]
    return interleave_datasets(parts, seed=seed, stopping_strategy="all_exhausted")


def run_distill(args: DistillArguments, data_args: ScenarioArguments, config: UndoConfig, given_names: set[str] | None = None) -> UndoTrainer:
    """UNDO on an unlearned model: a noised copy distilled from it on the data it was unlearned on; the student, its
    ``distillation_info.json``, an ``unlearning_info.json`` with the distillation recorded, and the card."""
    model_path, model, tokenizer = load_model(args.model_name_or_path, args.dtype)
    data_args, _, recorded = run_data(model_path, data_args, given_names, "distill")
    untouched = None
    if data_args.knows_facts:
        untouched = load_model(recorded_baseline(recorded, Path(model_path) / INFO_FILE), args.dtype)[1]
    scenario = data_args.build(tokenizer, untouched)
    if given_names is not None and "output_dir" not in given_names:
        config = dataclasses.replace(config, output_dir=f"{model_path.rstrip('/')}_undo")
    trainer = UndoTrainer(
        model, config, train_dataset=distillation_text(scenario, tokenizer, config.seed), eval_dataset=scenario.eval,
        processing_class=tokenizer, evaluators=scenario.evaluators,
    )  # fmt: skip
    trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    trainer.save_model(config.output_dir)
    if trainer.is_world_process_zero():
        info = recorded or UnlearningInfo(
            base_model=base_model_name(trainer.teacher), method="unknown", settings={}, forget={"source": data_args.forget_source},
            retain={"source": data_args.retain_source}, data=dataclasses.asdict(data_args),
        )  # fmt: skip
        info = dataclasses.replace(info, distillation=trainer.distillation_info(), weights_sha256=saved_weights_digest(config.output_dir))
        info.save(config.output_dir)
        model_card(info, None, config.hub_model_id).save(Path(config.output_dir) / "README.md")
        print(json.dumps(finite_or_null(info.distillation), indent=2))
        print(f"\nThe distilled model is in {config.output_dir}. Measure its robustness with:\n  hf-unlearn evaluate {config.output_dir}")
    return trainer


def distill_command(argv: Sequence[str]) -> UndoTrainer:
    argv = with_model_folder(argv)
    parser = parser_for(
        (DistillArguments, ScenarioArguments, UndoConfig),
        "UNDO (Lee et al. 2025): noise a copy of an unlearned model, then distill the unlearned model into it, on the data "
        "it was unlearned on (its unlearning_info.json: retain and forget-domain text, alternated); data flags override it.",
        "distill",
        usage="hf-unlearn distill UNLEARNED_MODEL_FOLDER [--noise_alpha 0.3] [--max_steps N] [other flags below]",
    )
    return run_distill(*parser.parse_args_and_config(argv), given_settings(argv))


# --- sweep ------------------------------------------------------------------------------------------


def sweep_command(argv: Sequence[str]) -> dict:
    parser = parser_for(
        (ModelArguments, DataArguments, SweepArguments),
        f"Tune a method for robustness (Optuna, under a disruption and a pass budget). Methods: {', '.join(available_methods())}.",
        "sweep",
    )
    parser.set_defaults(forget_pool="tuning")  # tune on half the forget documents; report on the other half
    try:
        model_args, data_args, args = parser.parse_args_and_config(list(argv))
    except ValueError as error:  # unlearn's training flags: say what a sweep takes instead
        if "is not a setting of" not in str(error):
            raise
        raise ValueError(
            f"{error}: a sweep sets each trial's length and batch itself (--pass_budget, --batch_size); settings every trial "
            "gets go in --fixed (YAML or JSON, e.g. --fixed '{target_modules: [gate_proj]}')"
        ) from error
    summary = run_sweep(args, data_args, model_args.model_name_or_path)
    print(json.dumps(finite_or_null(summary), indent=2, default=str))
    print(f"\nStudy {args.study_name} in {args.storage}; summary, best.yaml and plots in {args.output_dir}")
    return summary


# --- evaluate ---------------------------------------------------------------------------------------


@dataclass
class EvaluateArguments:
    model_name_or_path: str = field(metadata={"help": "The unlearned model (a folder written by `hf-unlearn unlearn`, or a Hub id)."})
    baseline: str | None = field(
        default=None,
        metadata={"help": "The model before unlearning: a folder, a Hub id, or 'embedded'; default: the model the unlearning run "
                  "started from (its unlearning_info.json), else the embedded SmolLM2."},  # fmt: skip
    )
    attack_suite: str = field(default="standard", metadata={"help": f"Attack suite preset: {', '.join(PRESETS)}."})
    attack_steps: int | None = field(default=None, metadata={"help": "Steps of every attack (default: the preset's)."})
    batch_size: int = field(default=8, metadata={"help": "Attack examples per step."})
    dtype: str = field(
        default="float32",
        metadata={"help": "Weights' dtype. Attacks fine-tune them, so half precision (which rounds their updates away) is refused "
                  "unless they train a LoRA adapter: for speed keep float32 and add --bf16 (autocast)."},  # fmt: skip
    )
    output_dir: str | None = field(default=None, metadata={"help": "Where the report goes; default: the model's folder."})
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the report and the updated card to hub_model_id."})
    hub_model_id: str | None = field(default=None, metadata={"help": "The model's Hub repository (org/name)."})
    report_to: str = field(default="none", metadata={"help": "'wandb': the attacks and the report as W&B runs."})
    run_name: str | None = field(default=None, metadata={"help": "W&B group of the attack runs."})
    lm_eval_tasks: list[str] | None = field(
        default=None,
        metadata={"help": "lm-evaluation-harness tasks (wmdp_bio, mmlu, ...) scored before and after the attacks (needs the lm-eval extra)."},
    )
    lm_eval_include_path: str | None = field(default=None, metadata={"help": "A folder of harness task YAML files of your own."})
    lm_eval_limit: float | None = field(default=None, metadata={"help": "Questions per harness task (the harness's limit)."})
    bf16: bool = field(default=False, metadata={"help": "Attacks under bf16 autocast (the weights stay float32)."})
    benchmark: str | None = field(
        default=None,
        metadata={"help": f"Also score {' or '.join(BENCHMARKS)} (their metrics as OpenUnlearning computes them) before and after "
                  "unlearning and at every attack evaluation; with --scenario fictitious, TOFU's metrics on its facts."},  # fmt: skip
    )
    benchmark_path: str | None = field(
        default=None, metadata={"help": "A local copy of the benchmark's Hub repository (locuslab/TOFU, muse-bench/MUSE-News|Books)."}
    )
    benchmark_subset: str | None = field(default=None, metadata={"help": "TOFU's forget split (default forget10) or MUSE's corpus (news)."})
    benchmark_chat_template: bool = field(default=False, metadata={"help": "Ask the benchmark's questions with the chat template."})
    retain_model: str | None = field(
        default=None,
        metadata={"help": "The model trained without the forget data, which forget quality (TOFU) and PrivLeak (MUSE) compare with; "
                  "scored once, its results cached in the output folder (<benchmark>_reference.json)."},  # fmt: skip
    )
    retain_logs: str | None = field(
        default=None, metadata={"help": "Instead of --retain_model: its results file (ours, or OpenUnlearning's TOFU_EVAL.json / MUSE_EVAL.json)."}
    )

    def __post_init__(self):
        check_preset_choice(self.attack_suite, self.attack_steps)
        if self.benchmark is not None and self.benchmark not in BENCHMARKS:
            raise ValueError(f"benchmark={self.benchmark!r} is invalid: use one of {', '.join(BENCHMARKS)}")
        if (self.retain_model or self.retain_logs) and self.benchmark is None:
            raise ValueError("--retain_model and --retain_logs serve a benchmark: add --benchmark tofu or --benchmark muse")
        if self.retain_model and self.retain_logs:
            raise ValueError("give --retain_model or --retain_logs, not both: the logs are that model's results")


def benchmark_evaluator(
    args: EvaluateArguments, data_args: ScenarioArguments, tokenizer: PreTrainedTokenizerBase, baseline: torch.nn.Module, output_dir: Path
) -> Evaluator:
    """``args.benchmark``'s evaluator (TOFU on the fictitious facts in the fictitious scenario, their real-author and
    world-fact sets the facts ``baseline`` knows), compared with the retain model's results: ``--retain_logs``, or
    ``--retain_model`` scored once and cached in ``output_dir``."""
    template = None if args.benchmark_chat_template else QA_TEMPLATE
    if args.benchmark == "tofu" and data_args.scenario == "fictitious":
        evaluator = fictitious_tofu_evaluator(baseline, tokenizer, data_args.fictitious_seed)
    elif args.benchmark == "tofu":
        evaluator = TOFUEvaluator.from_hub(args.benchmark_subset or "forget10", args.benchmark_path or "locuslab/TOFU", template=template)
    else:
        evaluator = MUSEEvaluator.from_hub(args.benchmark_subset or "news", args.benchmark_path, template=template)
    if args.retain_logs:
        return dataclasses.replace(evaluator, reference=args.retain_logs)
    if args.retain_model is None:
        return evaluator
    # What decides the reference: another benchmark set or prompt, and the cached results are not this one's.
    settings = {name: getattr(args, name) for name in ("retain_model", "benchmark", "benchmark_path", "benchmark_subset", "benchmark_chat_template")}
    settings.update(scenario=data_args.scenario, fictitious_seed=data_args.fictitious_seed)
    cache = output_dir / f"{args.benchmark}_reference.json"
    cached = json.loads(cache.read_text()) if cache.is_file() else {}
    if cached.get("settings") != settings:
        retain_path, retain, retain_tokenizer = load_model(args.retain_model, args.dtype)
        check_same_tokenizer(tokenizer, retain_tokenizer, args.model_name_or_path, retain_path)
        cached = {"settings": settings, **evaluator.reference_results(retain, tokenizer)}
        output_dir.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(cached, indent=2))
    return dataclasses.replace(evaluator, reference=cached)


def given_settings(argv: Sequence[str]) -> set[str]:
    """The settings ``argv`` gives: its ``--flags`` and the keys of its ``--config`` YAML."""
    argv = with_config_path(argv)
    names = {arg[2:].split("=", 1)[0] for arg in argv if arg.startswith("--")}
    if "--config" in argv:
        names |= set(yaml.safe_load(Path(argv[argv.index("--config") + 1]).read_text()) or {})
    return names


def evaluation_data(
    data_args: ScenarioArguments, recorded: dict[str, Any], given_names: set[str] | None = None
) -> tuple[ScenarioArguments, dict[str, dict[str, Any]]]:
    """The data to evaluate on: the unlearning run's (``recorded``, from its ``unlearning_info.json``) with the data
    settings given here on top (``given_names``; default: those that differ from the defaults), and which of those
    differ from the run's."""
    defaults = dataclasses.asdict(ScenarioArguments())
    given = {
        name: value
        for name, value in dataclasses.asdict(data_args).items()
        if (name in given_names if given_names is not None else value != defaults[name])
    }
    differing = {
        name: {"unlearning": recorded.get(name, defaults[name]), "evaluation": value}
        for name, value in given.items()
        if recorded and value != recorded.get(name, defaults[name])
    }
    return scenario_arguments({**recorded, **given}), differing


def run_data(
    model_path: str, data_args: ScenarioArguments, given_names: set[str] | None, command: str
) -> tuple[ScenarioArguments, dict[str, dict[str, Any]], UnlearningInfo | None]:
    """The data to attack ``model_path`` on: the data its unlearning run recorded (``unlearning_info.json``), with the
    data settings given here on top, each differing one named in a warning; ``(data, the differences, the record)``."""
    info_path = Path(model_path) / INFO_FILE
    recorded = UnlearningInfo.load(info_path.parent) if info_path.is_file() else None
    if recorded is not None and recorded.weights_sha256 and saved_weights_digest(model_path) != recorded.weights_sha256:
        raise ValueError(
            f"{model_path}: its weights are not the ones its {INFO_FILE} describes (they changed after it was written): restore "
            f"the weights it was saved with, or put the new weights in a folder of their own to {command} them"
        )
    data_args, differing = evaluation_data(data_args, recorded.data if recorded else {}, given_names)
    if differing:
        changes = "; ".join(f"{k}: {v['unlearning']!r} -> {v['evaluation']!r}" for k, v in sorted(differing.items()))
        print(f"warning: hf-unlearn {command} on other data than {model_path} was unlearned on ({changes})", file=sys.stderr)
    return data_args, differing, recorded


def recorded_baseline(recorded: UnlearningInfo | None, info_path: Path) -> str:
    """The model the run started from, where this machine can load it: the folder or Hub id it was loaded from, the
    embedded SmolLM2, or the recorded Hub id; otherwise an error asking for ``--baseline``."""
    if recorded is None:
        return "embedded"
    for candidate in (recorded.base_model_path, recorded.base_model):
        if candidate == "embedded" or (candidate and (Path(candidate).is_dir() or is_hub_id(candidate))):
            return "embedded" if candidate == EMBEDDED_HUB_ID and recorded.base_model_path in (None, "embedded") else candidate
    raise ValueError(
        f"{info_path} names {recorded.base_model_path or recorded.base_model!r} as the model it was unlearned from, which is not "
        "on this machine: give --baseline (that model's folder or Hub id)"
    )


def check_same_tokenizer(tokenizer: PreTrainedTokenizerBase, baseline: PreTrainedTokenizerBase, model_path: str, baseline_path: str) -> None:
    """Refuse a baseline with another tokenizer: both models are scored on the unlearned model's tokens, so their losses
    would not be comparable (a card claimed -99.37 % disruption) or the baseline would index past its vocabulary."""
    ours, theirs = tokenizer.get_vocab(), baseline.get_vocab()
    if ours != theirs:
        raise ValueError(
            f"--baseline {baseline_path} has another tokenizer than {model_path} ({len(theirs)} vs {len(ours)} tokens"
            f"{', the same size but other tokens' if len(ours) == len(theirs) else ''}): give the model it was unlearned from "
            f"(its {INFO_FILE} names it as base_model)"
        )


def run_evaluate(args: EvaluateArguments, data_args: ScenarioArguments, given_names: set[str] | None = None) -> RobustnessReport:
    """The attack suite on the unlearned model and on its baseline, on the data it was unlearned on (unless data
    flags say otherwise); the report and the card go to the model's folder."""
    if args.push_to_hub:  # checked before hours of attacks, not after
        if not args.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id (org/name)")
        check_hub_access("--push_to_hub")
    if args.lm_eval_tasks and importlib.util.find_spec("lm_eval") is None:
        raise ValueError("--lm_eval_tasks needs lm-evaluation-harness: pip install 'hf_unlearn[lm-eval]'")
    if args.lm_eval_tasks:
        check_harness_tasks(args.lm_eval_tasks, args.lm_eval_include_path)
    model_path = resolve_model_name_or_path(args.model_name_or_path)
    data_args, differing, recorded = run_data(model_path, data_args, given_names, "evaluate")  # refuses replaced weights unloaded
    _, model, tokenizer = load_model(model_path, args.dtype)
    info_path = Path(model_path) / INFO_FILE
    args.baseline = args.baseline or recorded_baseline(recorded, info_path)
    baseline_path, baseline, baseline_tokenizer = load_model(args.baseline, args.dtype)
    check_same_tokenizer(tokenizer, baseline_tokenizer, model_path, baseline_path)
    output_dir = Path(args.output_dir or model_path)
    if not output_dir.is_dir() and args.output_dir is None:
        raise ValueError(f"{model_path} is not a local folder: give --output_dir for the report")
    if recorded is None or not recorded.data:
        print(f"warning: {info_path} records no unlearning data: evaluating on the data flags given ({data_args.forget_source})", file=sys.stderr)
    scenario = data_args.build(tokenizer, baseline)  # the facts the model knew before unlearning
    overrides = {} if args.attack_steps is None else {"max_steps": args.attack_steps}
    suite = AttackSuite.preset(
        args.attack_suite, output_dir=str(output_dir / "attacks"), per_device_train_batch_size=args.batch_size,
        report_to=args.report_to, metric_for_best_model=scenario.best_metric,
        **({"bf16": True, "use_cpu": not torch.cuda.is_available()} if args.bf16 else {}), **overrides,
    )  # fmt: skip
    evaluators = dict(scenario.evaluators)  # split B's facts, for the facts scenario
    if args.benchmark:
        evaluators[args.benchmark] = benchmark_evaluator(args, data_args, tokenizer, baseline, output_dir)
    if args.lm_eval_tasks:
        limit = int(args.lm_eval_limit) if args.lm_eval_limit and args.lm_eval_limit >= 1 else args.lm_eval_limit
        evaluators["harness"] = HarnessEvaluator(args.lm_eval_tasks, args.lm_eval_include_path, limit, args.batch_size)
    report = robustness_report(
        f"Relearning attacks on {args.model_name_or_path} ({args.attack_suite} suite)", {"unlearned": model, "no_unlearning": baseline},
        suite, attack_dataset=scenario.attack, eval_dataset=scenario.eval, processing_class=tokenizer, retain_dataset=scenario.retain,
        evaluators=evaluators,
        details={"model": args.model_name_or_path, "model_weights": weights_digest(model).hexdigest(), "baseline": args.baseline,
                 "data": dataclasses.asdict(data_args),
                 **({"data_differs_from_unlearning": differing} if differing else {})},
        resume=True, wandb_group=group_name(args.run_name, "evaluate"),
    )  # fmt: skip
    paths = report.save(output_dir, REPORT_NAME)
    info = recorded or UnlearningInfo(
        base_model=base_model_name(baseline), method="unknown", settings={},
        forget={"source": data_args.forget_source}, retain={"source": data_args.retain_source},
    )  # fmt: skip
    card = model_card(info, report, args.hub_model_id)
    card.save(output_dir / "README.md")
    if args.push_to_hub:
        from huggingface_hub import HfApi

        HfApi().upload_folder(
            repo_id=args.hub_model_id, folder_path=str(output_dir), commit_message="Robustness report (hf-unlearn evaluate)",
            allow_patterns=["README.md", f"{REPORT_NAME}.*", INFO_FILE],
        )  # fmt: skip
    print(report.to_markdown())
    print(f"\nReport: {paths['markdown']} (and .json, .png); model card with the robustness table: {output_dir / 'README.md'}")
    return report


def evaluate_command(argv: Sequence[str]) -> RobustnessReport:
    argv = with_model_folder(argv)
    parser = parser_for(
        (EvaluateArguments, ScenarioArguments),
        "Attack an unlearned model and its baseline with an attack suite; write the robustness report and the model card. "
        "The data is the unlearning run's (its unlearning_info.json); data flags given here override it, with a warning.",
        "evaluate",
        usage="hf-unlearn evaluate MODEL_FOLDER [--baseline MODEL] [--attack_suite PRESET] [other flags below]",
    )
    if not {"--model_name_or_path", "--config", "-h", "--help"} & {a.split("=")[0] for a in argv}:
        raise ValueError("give the unlearned model's folder (or Hub id) first: hf-unlearn evaluate MODEL_FOLDER [flags]")
    return run_evaluate(*parser.parse_args_and_config(argv), given_settings(argv))
