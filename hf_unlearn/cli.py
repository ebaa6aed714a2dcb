"""``hf-unlearn``: the recipes as one installed command, in the manner of the ``trl`` CLI.

    hf-unlearn unlearn  --config mudman_smollm2_code [--method npo ...]
    hf-unlearn distill  outputs/mudman_smollm2_code --noise_alpha 0.3   # UNDO: noise, then distill the unlearned model
    hf-unlearn attack   --model_name_or_path outputs/mudman_smollm2_code [--attack_suite standard]
    hf-unlearn sweep    --method mudman --n_trials 20
    hf-unlearn evaluate outputs/mudman_smollm2_code --baseline embedded [--push_to_hub]
    hf-unlearn env      # versions and devices, for bug reports
    hf-unlearn --version

Every command takes YAML configs (``--config``) and command-line flags (``TrlParser``).
``--num_processes N`` (and ``--accelerate_config FILE``, ``--main_process_port P``) runs the command
under ``accelerate launch`` with N processes: on GPUs, or, on a machine without one, N CPU processes.
This module imports nothing heavy until a command runs, so ``--help`` and ``--version`` answer at once;
the commands live in ``hf_unlearn.commands``.
"""

from __future__ import annotations

import difflib
import gc
import json
import logging
import os
import sys
from collections.abc import Sequence

# The commands, each a module of hf_unlearn.commands with make_parser and main.
COMMANDS = ("unlearn", "distill", "attack", "sweep", "evaluate")
# Flags that go to `accelerate launch` rather than to the command, each with one value.
LAUNCH_FLAGS = ("--num_processes", "--accelerate_config", "--main_process_port")
# What a command raises for bad input (a missing file or package, a wrong value), printed without a traceback.
INPUT_ERRORS = (ValueError, FileNotFoundError, ModuleNotFoundError)
# What `accelerate launch` raises when a process it started exits with an error (torch elastic, or a plain subprocess).
LAUNCH_FAILURES = ("ChildFailedError", "CalledProcessError")


def split_launch_flags(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """``({flag: value} for accelerate launch, the command's own arguments)``; ``--flag=value`` works too."""
    launch, rest, arguments = {}, [], list(argv)
    while arguments:
        argument = arguments.pop(0)
        flag, _, value = argument.partition("=")
        if flag in LAUNCH_FLAGS:
            if not value:
                if not arguments:
                    raise SystemExit(f"hf-unlearn: {flag} needs a value")
                value = arguments.pop(0)
            launch[flag] = value
        else:
            rest.append(argument)
    return launch, rest


def launch(command: str, flags: dict[str, str], arguments: list[str]) -> None:
    """Run ``hf-unlearn <command> <arguments>`` under ``accelerate launch``, as TRL's CLI hands its scripts over."""
    import torch
    from accelerate.commands.launch import launch_command, launch_command_parser

    launch_arguments = []
    if "--accelerate_config" in flags:
        launch_arguments += ["--config_file", flags["--accelerate_config"]]
    if "--main_process_port" in flags:
        launch_arguments += ["--main_process_port", flags["--main_process_port"]]
    processes = int(flags.get("--num_processes", 0))
    if processes:
        launch_arguments += ["--num_processes", str(processes)]
    if processes > 1 and "--accelerate_config" not in flags:
        # Several processes need --multi_gpu; without a GPU, accelerate runs them on the CPU only with
        # ACCELERATE_USE_CPU (its --cpu flag starts a single process).
        launch_arguments.append("--multi_gpu")
        if not torch.cuda.is_available():
            os.environ["ACCELERATE_USE_CPU"] = "1"
    parsed = launch_command_parser().parse_args([*launch_arguments, "--module", "hf_unlearn.cli", command, *arguments])
    # A failed process says why itself; torch elastic's own lines about it ("failed (exitcode: 1)") would follow it.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    launch_command(parsed)


def mask_secrets(argv: list[str]) -> None:
    """Hide ``--hub_token``'s value in ``sys.argv``, which W&B records with every run (the token was parsed already)."""
    for i, argument in enumerate(argv):
        if argument == "--hub_token" and i + 1 < len(argv):
            argv[i + 1] = "<hidden>"
        elif argument.startswith("--hub_token="):
            argv[i] = "--hub_token=<hidden>"


def env_command() -> None:
    from .environment import environment

    print(json.dumps(environment(), indent=2))


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["--version"], ["-V"]):
        from . import __version__

        print(f"hf-unlearn {__version__}")
        return
    if argv[:1] == ["env"]:
        env_command()
        return
    if not argv or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            close = difflib.get_close_matches(argv[0], [*COMMANDS, "env"], n=1)
            print(f"hf-unlearn: unknown command {argv[0]!r}" + (f"; did you mean {close[0]!r}?" if close else ""), file=sys.stderr)
        print(__doc__.strip().replace("``", "`"))
        print(f"\ncommands: {', '.join(COMMANDS)}, env; `hf-unlearn <command> --help` lists a command's flags")
        sys.exit(0 if argv[:1] in (["-h"], ["--help"]) else 2)
    mask_secrets(sys.argv)
    flags, arguments = split_launch_flags(argv[1:])
    if flags:
        try:
            launch(argv[0], flags, arguments)
        except Exception as error:  # a process failed: it printed why (one line); the launcher's traceback adds nothing
            if os.environ.get("HF_UNLEARN_TRACEBACK") or type(error).__name__ not in LAUNCH_FAILURES:
                raise
            sys.exit(1)
        return
    run_command(argv[0], arguments)


def run_command(command: str, arguments: list[str]) -> None:
    """``hf-unlearn <command> <arguments>`` in this process (``recipes/*.py`` call it too): bad input ends in one line,
    printed by the main process only, and exit status 1."""
    from .tracking import finish_open_run

    try:
        from . import commands  # here, not at the top: --help and --version answer without torch

        # transformers' Trainer.train() runs gc.collect() (accelerate's free_memory): 0.5 s a call over the ~500,000
        # objects these imports leave, at every attack of a suite. They are never garbage: frozen out of collections.
        gc.freeze()
        getattr(commands, command).main(arguments)
    except INPUT_ERRORS as error:
        if os.environ.get("HF_UNLEARN_TRACEBACK"):
            raise
        # Bad input is named in the message, with its fix: that, not a traceback, is what the user needs. Every process
        # of a launch meets it; the main one says it.
        if os.environ.get("RANK", "0") == "0":
            print(f"hf-unlearn {command}: error: {error}\n(HF_UNLEARN_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        sys.exit(1)
    finally:
        finish_open_run()  # the unlearn stage's W&B run stays open for the evaluation after training


if __name__ == "__main__":
    main()
