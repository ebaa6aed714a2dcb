"""What the ``hf-unlearn`` commands share: the parser (YAML configs, shipped configs, one-line errors), the model
argument, and the data a saved model's ``unlearning_info.json`` records."""

from __future__ import annotations

import dataclasses
import difflib
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from trl import TrlParser

from ..methods import available_methods, get_method
from ..model_card import (
    INFO_FILE,
    UnlearningInfo,
    is_hub_id,
    saved_weights_digest,
)
from ..models import EMBEDDED_HUB_ID
from ..scenarios import ScenarioArguments, scenario_arguments
from ..unlearn_config import UnlearnConfig

CONFIG_HELP = (
    "A YAML file of any of the flags below, or the name of a config shipped with hf_unlearn (mudman_smollm2_code, "
    "relearn_attack_smollm2_code); command-line flags override it."
)


SHIPPED_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


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
