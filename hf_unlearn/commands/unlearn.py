"""``hf-unlearn unlearn``: a method unlearns the scenario's forget data; the model, its card and
``unlearning_info.json`` are saved (then UNDO, with ``--then_distill``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import yaml
from trl import ModelConfig, get_peft_config

from ..evaluation.report import finite_or_null
from ..methods import available_methods, get_method
from ..model_card import (
    INFO_FILE,
)
from ..models import load_model
from ..pipeline import unlearn
from ..scenarios import ScenarioArguments
from ..undo import UndoTrainer
from ..unlearn_config import UnlearnConfig
from . import distill
from .common import (
    Parser,
    check_hub_access,
    config_path,
    parser_for,
    with_config_path,
)

if TYPE_CHECKING:
    from ..unlearn_trainer import UnlearnTrainer


def method_config_class(argv: Sequence[str]) -> type[UnlearnConfig]:
    """The config class of the method named by ``--method`` (or ``--method=``), else by the YAML's ``method``, else
    MUDMAN's: the method is resolved once, from the arguments, and its config's flags are the parser's."""
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


def make_parser(config_class: type[UnlearnConfig]) -> Parser:
    """The parser of ``hf-unlearn unlearn`` for the method configured by ``config_class``."""
    description = (
        f"Unlearn a forget set with UnlearnTrainer. Methods: {', '.join(available_methods())} (--method picks one; the flags "
        f"shown are those of {config_class.__name__}, the config of '{config_class.__dataclass_fields__['method'].default}')."
    )
    return parser_for((ModelConfig, ScenarioArguments, config_class, ChainArguments), description, "unlearn")


def run_unlearn(
    model_config: ModelConfig, data_args: ScenarioArguments, config: UnlearnConfig, chain: ChainArguments | None = None
) -> UnlearnTrainer | UndoTrainer:
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
        return distill.main([config.output_dir, *([] if chain.then_distill == "defaults" else ["--config", chain.then_distill])])
    return trainer


def main(argv: Sequence[str]) -> UnlearnTrainer | UndoTrainer:
    return run_unlearn(*make_parser(method_config_class(argv)).parse_args_and_config(list(argv)))
