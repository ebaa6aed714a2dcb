"""``hf-unlearn evaluate``: the attack suite on an unlearned model and its baseline; the robustness report and
the card."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from ..attacks import PRESETS, AttackSuite
from ..attacks.presets import check_preset_choice
from ..data.sources import QA_TEMPLATE
from ..evaluation.evaluators import Evaluator, HarnessEvaluator, check_harness_tasks
from ..evaluation.muse import MUSEEvaluator
from ..evaluation.report import RobustnessReport
from ..evaluation.tofu import TOFUEvaluator
from ..forward import weights_digest
from ..model_card import (
    INFO_FILE,
    REPORT_NAME,
    UnlearningInfo,
    base_model_name,
    model_card,
)
from ..models import load_model, resolve_model_name_or_path
from ..pipeline import robustness_report
from ..scenarios import ScenarioArguments, fictitious_tofu_evaluator
from ..tracking import group_name
from .common import (
    Parser,
    check_hub_access,
    given_settings,
    parser_for,
    recorded_baseline,
    run_data,
    with_model_folder,
)

BENCHMARKS = ("tofu", "muse")


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


def make_parser() -> Parser:
    return parser_for(
        (EvaluateArguments, ScenarioArguments),
        "Attack an unlearned model and its baseline with an attack suite; write the robustness report and the model card. "
        "The data is the unlearning run's (its unlearning_info.json); data flags given here override it, with a warning.",
        "evaluate",
        usage="hf-unlearn evaluate MODEL_FOLDER [--baseline MODEL] [--attack_suite PRESET] [other flags below]",
    )


def main(argv: Sequence[str]) -> RobustnessReport:
    argv = with_model_folder(argv)
    if not {"--model_name_or_path", "--config", "-h", "--help"} & {a.split("=")[0] for a in argv}:
        raise ValueError("give the unlearned model's folder (or Hub id) first: hf-unlearn evaluate MODEL_FOLDER [flags]")
    return run_evaluate(*make_parser().parse_args_and_config(argv), given_settings(argv))
