"""``hf-unlearn sweep``: tune a method for robustness under a disruption and a pass budget."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..data import DataArguments
from ..evaluation.report import finite_or_null
from ..methods import available_methods
from ..sweep import SweepArguments, run_sweep
from .common import (
    ModelArguments,
    Parser,
    parser_for,
)


def make_parser() -> Parser:
    parser = parser_for(
        (ModelArguments, DataArguments, SweepArguments),
        f"Tune a method for robustness (Optuna, under a disruption and a pass budget). Methods: {', '.join(available_methods())}.",
        "sweep",
    )
    parser.set_defaults(forget_pool="tuning")  # tune on half the forget documents; report on the other half
    return parser


def main(argv: Sequence[str]) -> dict:
    try:
        model_args, data_args, args = make_parser().parse_args_and_config(list(argv))
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
