"""``hf-unlearn distill``: UNDO on an unlearned model (noise a copy of it, then distill it into the copy)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from ..attacks.inputs import tokenized
from ..evaluation.report import finite_or_null
from ..model_card import (
    INFO_FILE,
    UnlearningInfo,
    base_model_name,
    model_card,
    saved_weights_digest,
)
from ..models import load_model
from ..scenarios import Scenario, ScenarioArguments
from ..undo import UndoConfig, UndoTrainer
from .common import (
    Parser,
    given_settings,
    parser_for,
    recorded_baseline,
    run_data,
    with_model_folder,
)


@dataclass
class DistillArguments:
    model_name_or_path: str = field(metadata={"help": "The unlearned model, the teacher (a folder written by `hf-unlearn unlearn`, or a Hub id)."})
    dtype: str = field(default="float32", metadata={"help": "Weights' dtype (the student trains: keep float32; --bf16 for autocast)."})
    distill_forget_text: bool = field(
        default=True,
        metadata={"help": "Alternate the forget-domain text with the retain text, as the authors do, so the student copies the "
                  "teacher's unlearned outputs there too (false: retain text only)."},
    )  # fmt: skip


def distillation_text(scenario: Scenario, tokenizer: PreTrainedTokenizerBase, seed: int, forget_text: bool = True) -> Dataset:
    """What UNDO distills on, as the authors mix it: the scenario's retain text and its forget-domain text, alternated
    (their language run: 50/50), so the student also copies the teacher's unlearned outputs on the forget domain
    (``forget_text=False``: the retain text alone, shuffled with ``seed``)."""
    from datasets import interleave_datasets

    parts = [tokenized(part, tokenizer).select_columns(["input_ids"]) for part in (scenario.retain, scenario.unlearn)]
    if not forget_text:
        return parts[0].shuffle(seed=seed)
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
        model, config, train_dataset=distillation_text(scenario, tokenizer, config.seed, args.distill_forget_text), eval_dataset=scenario.eval,
        processing_class=tokenizer, evaluators=scenario.evaluators,
    )  # fmt: skip
    trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    trainer.save_model(config.output_dir)
    if trainer.is_world_process_zero():
        info = recorded or UnlearningInfo(
            base_model=base_model_name(trainer.teacher), method="unknown", settings={}, forget={"source": data_args.forget_source},
            retain={"source": data_args.retain_source}, data=dataclasses.asdict(data_args),
        )  # fmt: skip
        distillation = {**trainer.distillation_info(), "forget_text": args.distill_forget_text}
        info = dataclasses.replace(info, distillation=distillation, weights_sha256=saved_weights_digest(config.output_dir))
        info.save(config.output_dir)
        model_card(info, None, config.hub_model_id).save(Path(config.output_dir) / "README.md")
        print(json.dumps(finite_or_null(info.distillation), indent=2))
        print(f"\nThe distilled model is in {config.output_dir}. Measure its robustness with:\n  hf-unlearn evaluate {config.output_dir}")
    return trainer


def make_parser() -> Parser:
    return parser_for(
        (DistillArguments, ScenarioArguments, UndoConfig),
        "UNDO (Lee et al. 2025): noise a copy of an unlearned model, then distill the unlearned model into it, on the data "
        "it was unlearned on (its unlearning_info.json: retain and forget-domain text, alternated); data flags override it.",
        "distill",
        usage="hf-unlearn distill UNLEARNED_MODEL_FOLDER [--noise_alpha 0.3] [--max_steps N] [other flags below]",
    )


def main(argv: Sequence[str]) -> UndoTrainer:
    argv = with_model_folder(argv)
    return run_distill(*make_parser().parse_args_and_config(argv), given_settings(argv))
