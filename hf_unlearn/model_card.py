"""What an unlearned model carries to the Hub: a model card that says what was forgotten, how, how
robustly, and the robustness report itself.

``UnlearnTrainer.create_model_card`` writes ``README.md`` and ``unlearning_info.json`` into the
model folder (``push_to_hub`` uploads the folder); ``hf-unlearn evaluate`` adds
``robustness_report.{json,md,png}`` there and rewrites the card with the robustness table.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import TrainingArguments

from .data.sources import HUB_IDS
from .environment import package_versions
from .evaluation.disruption import METRIC
from .evaluation.disruption import describe as disruption_change
from .evaluation.report import RobustnessReport, point_label
from .models import EMBEDDED_HUB_ID, EMBEDDED_LICENSE, EMBEDDED_MODEL_NAME, cache_root
from .registry import Citation, get_method
from .unlearn_config import FullUpdateArguments

INFO_FILE = "unlearning_info.json"
REPORT_NAME = "robustness_report"

@dataclass
class UnlearningInfo:
    """What the card says about one unlearning run; saved beside the model as ``unlearning_info.json``."""

    base_model: str
    method: str
    settings: dict[str, Any]  # the method's settings that differ from its config's defaults
    forget: dict[str, Any]  # {"source", "examples", "tokens" (the split), "trained_examples", "trained_tokens" (the run)}
    retain: dict[str, Any]
    disruption: dict[str, float] = field(default_factory=dict)  # {"retain_loss_before": ..., "retain_loss_after": ...}
    data: dict[str, Any] = field(default_factory=dict)  # the run's DataArguments, which `hf-unlearn evaluate` reuses
    adapter: bool = False  # a LoRA adapter on base_model (``unlearn --use_peft``), not full weights
    # What the run loaded base_model from ("embedded", a folder or a Hub id): `hf-unlearn evaluate`'s default baseline.
    base_model_path: str | None = None
    license: str | None = None  # the base model's, which the unlearned weights inherit
    wandb_url: str | None = None  # the unlearning run's W&B page, when it was logged online
    disruption_budget: str | None = None  # "+0.1 %", "+0.05 nats": the run's budget (UnlearnConfig.disruption_budget), if any
    distillation: dict[str, Any] = field(default_factory=dict)  # UNDO after unlearning (UndoTrainer.distillation_info()), if any
    # saved_weights_digest of the folder it was saved in: `hf-unlearn evaluate` refuses weights replaced since. None: unknown.
    weights_sha256: str | None = None

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / INFO_FILE
        path.write_text(json.dumps(asdict(self), indent=2, default=str))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> UnlearningInfo:
        return cls(**json.loads((Path(folder) / INFO_FILE).read_text()))


def saved_weights_digest(folder: str | Path) -> str | None:
    """SHA-256 of the weight files in ``folder`` (``*.safetensors``: the model, its shards, or a LoRA adapter), by name
    and content; None when it holds none."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as weights:
            digest.update(hashlib.file_digest(weights, "sha256").digest())
    return digest.hexdigest()


# TrainingArguments fields that describe a method's training (the rest is plumbing: output, logging, saving).
_TRAINING_FIELDS = ("per_device_train_batch_size", "gradient_accumulation_steps", "max_steps", "num_train_epochs", "seed",
                    "learning_rate", "optim", "lr_scheduler_type", "max_grad_norm", "weight_decay", "warmup_steps")  # fmt: skip
_CARRIER = ("learning_rate", "optim", "lr_scheduler_type", "max_grad_norm")  # of methods whose SGD step only carries the update


def method_settings(args: Any) -> dict[str, Any]:
    """The method's settings that differ from its config's defaults, without the plumbing (and, for methods that
    write their whole update, without the SGD step at learning rate 1 that only carries it)."""
    plumbing = {f.name for f in fields(TrainingArguments)} - set(_TRAINING_FIELDS)
    plumbing |= {"dataset_text_field", "max_length", "max_retain_loss_ratio"}
    if isinstance(args, FullUpdateArguments):
        plumbing |= set(_CARRIER)
    defaults = {f.name: f.default if f.default is not MISSING else f.default_factory() for f in fields(type(args)) if f.init}
    return {
        name: getattr(args, name)
        for name in defaults
        if name not in plumbing and name != "method" and getattr(args, name) != defaults[name]
    }


def base_model_name(model: Any) -> str:
    """The Hub id (or path) of the model being unlearned: the embedded SmolLM2 by its Hub id."""
    config = getattr(model, "config", None)
    name = str(getattr(config, "_name_or_path", "") or "")
    if name and Path(name).resolve() == (cache_root() / EMBEDDED_MODEL_NAME).resolve():
        return EMBEDDED_HUB_ID
    return name or "unknown"


def unlearned_from(model: Any) -> str:
    """The Hub id (or path) of the model that ``model`` was unlearned from, when it was loaded from a folder this
    package wrote (its ``unlearning_info.json`` records it), else ``base_model_name(model)``: an unlearned SmolLM2
    loaded from ``outputs/...`` is still SmolLM2 (for instance for its pretraining tokens)."""
    name = str(getattr(getattr(model, "config", None), "_name_or_path", "") or "")
    if name and (Path(name) / INFO_FILE).is_file():
        recorded = json.loads((Path(name) / INFO_FILE).read_text()).get("base_model")  # the one field: any version's record
        if recorded:
            return str(recorded)
    return base_model_name(model)


def base_model_path(model: Any) -> str | None:
    """Where the model was loaded from, to load it again: "embedded" for the embedded SmolLM2 (its cache folder
    differs between machines), an absolute folder, or a Hub id; None if the model does not say."""
    name = str(getattr(getattr(model, "config", None), "_name_or_path", "") or "")
    if not name:
        return None
    if base_model_name(model) == EMBEDDED_HUB_ID and name != EMBEDDED_HUB_ID:
        return "embedded"
    return str(Path(name).resolve()) if Path(name).exists() else name


def base_model_license(path: str | None) -> str | None:
    """The license in the base model's card (``path`` as ``base_model_path`` gives it), None when it cannot be read."""
    if path == "embedded":
        return EMBEDDED_LICENSE
    if not path:
        return None
    try:
        card = ModelCard.load(Path(path) / "README.md" if Path(path).is_dir() else path)
    except Exception:  # no card, offline, or not on the Hub: the card then names no license
        return None
    return card.data.license


def hub_dataset_ids(*sources: str | None) -> list[str]:
    """The sources that are Hub dataset ids (``org/name``), for the card's ``datasets`` metadata."""
    ids = []
    for source in sources:
        hub_id = HUB_IDS.get(source or "", source)
        if hub_id and hub_id.count("/") == 1 and not Path(hub_id).exists() and hub_id not in ids:
            ids.append(hub_id)
    return ids


def _disruption_from(report: RobustnessReport | None) -> dict[str, float]:
    """Retain loss before / after unlearning from the robustness report, for runs that did not evaluate while training."""
    unlearned = [run for run in (report.runs if report is not None else {}) if run != report.baseline]
    if not unlearned:
        return {}
    return {"retain_loss_before": report.before[METRIC], "retain_loss_after": report.runs[unlearned[0]]["after_unlearning"][METRIC]}


def is_hub_id(name: str) -> bool:
    """``org/name`` and not a local path: what the Hub accepts as ``base_model``."""
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists()


# The benchmarks' headline metrics (hf-unlearn evaluate --benchmark), shown in the card and its model-index, with the
# dataset each is measured on.
BENCHMARK_HEADLINES = {"tofu_forget_quality": "locuslab/TOFU", "tofu_model_utility": "locuslab/TOFU", "muse_verbmem_forget": "MUSE",
                       "muse_knowmem_forget": "MUSE", "muse_knowmem_retain": "MUSE", "muse_privleak": "MUSE"}  # fmt: skip


def eval_results(info: UnlearningInfo, report: RobustnessReport | None) -> list[EvalResult] | None:
    """The card's ``model-index``: the unlearned model's held-out forget metric, and the benchmarks' headline metrics,
    after unlearning and at the attacker's best."""
    unlearned = [run for run in (report.runs if report is not None else {}) if run != report.baseline]
    if not unlearned:
        return None
    run, metric, source = report.runs[unlearned[0]], report.best_metric, str(info.forget.get("source", "forget data"))
    points = {"after unlearning": run["after_unlearning"], f"at the attacker's best over {attack_count(len(run['attacks']))}": run["attack_best"]}
    datasets = {metric: (source, f"{source} (held-out forget split)")}
    datasets.update({m: (hub, hub) for m, hub in BENCHMARK_HEADLINES.items() if m in run["after_unlearning"]})
    return [
        EvalResult(task_type="text-generation", dataset_type=dataset, dataset_name=name, metric_type=key,
                   metric_name=f"{key} {when}", metric_value=round(point[key], 4))  # fmt: skip
        for key, (dataset, name) in datasets.items()
        for when, point in points.items()
        if point is not None and math.isfinite(point.get(key, math.nan))
    ]


def model_card(info: UnlearningInfo, report: RobustnessReport | None = None, model_id: str | None = None) -> ModelCard:
    """The unlearned model's card: metadata (base model, datasets, tags, model-index) and what was forgotten, how, how robustly."""
    name = model_id or f"{info.base_model.split('/')[-1]}-{info.method}-unlearned"
    data = ModelCardData(
        base_model=info.base_model if is_hub_id(info.base_model) else None,  # a local folder is named in the text only
        license=info.license,
        model_name=name,
        eval_results=eval_results(info, report),
        datasets=hub_dataset_ids(info.forget.get("source"), info.retain.get("source")) or None,
        tags=["hf_unlearn", "unlearning", info.method],
        library_name="peft" if info.adapter else "transformers",
        pipeline_tag="text-generation",
    )
    settings = "\n".join(f"| `{k}` | `{v}` |" for k, v in sorted(info.settings.items())) or "| (all defaults) | |"
    sections = [
        f"# {name}",
        f"`{info.base_model}` after unlearning with **{info.method}** (hf_unlearn's `UnlearnTrainer`): "
        "the weights were changed so that the model no longer produces the forget data, while keeping its behaviour on the "
        "retain data, and so that fine-tuning on part of the forgotten data does not bring the rest back.",
        "## What was forgotten\n\n" + _data_table(info),
        f"## Method\n\n`method={info.method}`; settings that differ from the method's defaults:\n\n| setting | value |\n|---|---|\n{settings}"
        + (f"\n\nTraining logs: [the W&B run]({info.wandb_url})." if info.wandb_url else "") + _distillation_text(info.distillation),
    ]
    disruption = info.disruption or _disruption_from(report)
    if disruption:
        before, after = disruption.get("retain_loss_before"), disruption.get("retain_loss_after")
        if before is not None and after is not None:
            budget = (f" Its disruption budget was {info.disruption_budget}: training stops at the first evaluation beyond it and keeps "
                      "the weights of the last one within it.") if info.disruption_budget else ""  # fmt: skip
            sections.append(f"## Disruption\n\nHeld-out retain loss {before:.4f} before unlearning, {after:.4f} after ({disruption_change(before, after)}).{budget}")
    sections.append("## Robustness\n\n" + (_robustness(report) if report is not None else (
        "Not measured yet. Run `hf-unlearn evaluate <this model's folder>` to attack it and the model it was unlearned from with the relearning "
        "attack suite (on the data it was unlearned on, recorded in `unlearning_info.json`) and add the table here."
    )))  # fmt: skip
    repository = model_id or "<this repository>"
    if info.adapter:
        usage = (f"A LoRA adapter on `{info.base_model}`; merge it as below (`hf-unlearn evaluate` measures the merged weights).\n\n"
                 "```python\nfrom peft import AutoPeftModelForCausalLM\nfrom transformers import AutoTokenizer\n\n"
                 f'model = AutoPeftModelForCausalLM.from_pretrained("{repository}").merge_and_unload()\n')  # fmt: skip
    else:
        usage = "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n" + f'model = AutoModelForCausalLM.from_pretrained("{repository}")\n'
    sections.append(f'## How to use\n\n{usage}tokenizer = AutoTokenizer.from_pretrained("{repository}")\n```')
    sections.append(
        "## Limitations\n\nUnlearning is measured on the held-out part of the forget data and against the attacks listed above; an "
        "attacker with more data, more compute or other attacks may recover more. Behaviour outside the retain and "
        "general-text evaluations was not measured. Knowledge close to, but not in, the forget data may be affected."
    )
    versions = package_versions(("hf_unlearn", "transformers", "torch", "peft", "trl", "accelerate", "datasets"))
    sections.append("## Framework versions\n\n" + "\n".join(f"- {name}: {version}" for name, version in versions.items() if version))
    citation = registered_citation(info.method)
    if citation is not None:  # the method's own paper only
        sections.append(f"## Citation\n\n```bibtex\n{citation.bibtex()}\n```")
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n")


def registered_citation(method: str) -> Citation | None:
    """The paper ``method``'s registration cites (None for a method the registry does not know: an old card's)."""
    try:
        return get_method(method).citation
    except ValueError:
        return None


def _data_table(info: UnlearningInfo) -> str:
    """The forget and retain splits' sizes, and how much of the forget split the run trained on (a short run trains
    on a fraction of it: the split alone would overstate what was unlearned)."""
    rows = ["| | source | examples in the split | tokens in the split | trained on |", "|---|---|---|---|---|"]
    for part in ("forget", "retain"):
        entry = getattr(info, part)
        trained = ""
        if "trained_examples" in entry:
            distinct = min(entry["trained_examples"], entry.get("examples", entry["trained_examples"]))
            trained = f"{entry['trained_examples']:,} examples ({distinct:,} distinct)"
            trained += f", {entry['trained_tokens']:,} tokens" if "trained_tokens" in entry else ""
        rows.append(f"| {part} | {entry.get('source', '?')} | {_count(entry.get('examples'))} | {_count(entry.get('tokens'))} | {trained} |")
    return "\n".join(rows)


def _distillation_text(distillation: dict[str, Any]) -> str:
    """The UNDO stage, when the unlearned model was distilled into a noised copy of itself (``hf-unlearn distill``)."""
    if not distillation:
        return ""
    share = distillation.get("distill_to_pretraining_tokens")
    stopped = (f"it stopped at step {distillation['tolerance_reached_at_step']}, within {distillation['distill_tolerance']:.0%} of the "
               "unlearned model's retain loss" if distillation.get("tolerance_reached") else "it did not reach its retain-loss tolerance")  # fmt: skip
    return (
        f"\n\nThen **UNDO** (Lee et al. 2025, arXiv 2506.06278): the unlearned model was distilled into a copy of itself noised with "
        f"α={distillation['noise_alpha']}, β={distillation['noise_beta']}, on {_count(distillation.get('distill_tokens'))} tokens"
        + (" of retain text only" if distillation.get("forget_text") is False else "")
        + (f" ({share:.2g} of the base model's pretraining tokens)" if share else "") + f" in {distillation.get('steps')} steps; {stopped}."
    )


def _count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def attack_count(n: int) -> str:
    """"3 attacks": fine-tuning and those that train nothing (quantization, prompts) alike."""
    return f"{n} attack" + ("" if n == 1 else "s")


def _robustness(report: RobustnessReport) -> str:
    """The attacker's best over the suite, for this model and the untouched one, from the robustness report."""
    metric = report.best_metric
    # lm-evaluation-harness scores and the benchmarks' headline metrics, if any
    harness = sorted(m for m in report.metrics() if m.startswith("harness_")) + [m for m in BENCHMARK_HEADLINES if m in report.metrics()]
    lines = [
        f"The attacker's best held-out `{metric}` over {attack_count(len(next(iter(report.runs.values()))['attacks']))} "
        f"(each on a fresh copy of the weights; {'higher' if report.greater_is_better else 'lower'} is a stronger attack), "
        f"with the retain loss at that point. Full report: `{REPORT_NAME}.md`, `{REPORT_NAME}.json`, `{REPORT_NAME}.png`.",
        "",
        f"![The attack curves]({REPORT_NAME}.png)",
        "",
        "| model | before the attacks | attacker's best | attack | retain loss there |"
        + "".join(f" {m.removeprefix('harness_')}: before / at the attacker's best |" for m in harness),
        "|---|---|---|---|---|" + "---|" * len(harness),
    ]
    differing = report.details.get("data_differs_from_unlearning")
    if differing:
        changes = "; ".join(f"`{k}` {v['unlearning']!r} when unlearning, {v['evaluation']!r} here" for k, v in sorted(differing.items()))
        lines[1:1] = ["", f"**Evaluated on other data than the model was unlearned on:** {changes}."]
    for run, result in report.runs.items():
        start, best = result["after_unlearning"], result["attack_best"]
        if best is None:
            lines.append(f"| {run} | {start[metric]:.4f} | every attack diverged: no figure | | |" + " |" * len(harness))
            continue
        cells = "".join(f" {start.get(m, float('nan')):.4f} / {best.get(m, float('nan')):.4f} |" for m in harness)
        lines.append(
            f"| {run} | {start[metric]:.4f} | {best[metric]:.4f} | {best['attack']} ({result['attacks'][best['attack']]['kind']}, "
            f"{point_label(best)}) | "
            f"{best.get('retain_loss', float('nan')):.4f} |{cells}"
        )
    samples = report.text_samples_markdown()
    return "\n".join(lines) + ("\n\n" + samples.replace("### ", "#### ", 1) if samples else "")
