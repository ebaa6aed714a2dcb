"""``AttackSuite``: many relearning attacks on fresh copies of a model, and the attacker's best over all.

One attack is fragile evidence: an unclipped SGD attack can blow the model up and make a method
look robust, while AdamW with clipping brings the knowledge back. The evaluations the field trusts
use many fine-tuning adversaries (TAR red-teams with 28; Deeb & Roger sweep the learning rate), and
so does every robustness figure of this package: the attacker's best point over a suite, diverged
attacks (NaN, or a model the attack broke) marked and never counted.

    suite = AttackSuite.preset("standard", output_dir="outputs/attacks", metric_for_best_model="eval_facts_accuracy")
    result = suite.run(model, attack_dataset=split_a, eval_dataset={"forget": ..., "retain": ...},
                       evaluators={"facts": FactEvaluator(split_b)}, processing_class=tokenizer)
    result.best_point()  # {"attack": "adamw_1e-4", "step": 30, "facts_accuracy": ..., "retain_loss": ...}
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from accelerate import PartialState
from datasets import Dataset
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging

from ..evaluation.evaluators import Evaluator
from ..forward import weights_digest
from ..models import load_causal_lm
from ..tracking import group_name, wandb_run
from .attack import ATTACK_KINDS, evaluate_point
from .presets import PRESETS
from .relearn_config import RelearnAttackConfig

logger = logging.get_logger(__name__)
# The kind of the one "attack" of ``AttackSuite.unattacked``: the model evaluated as it is.
NOT_ATTACKED = "none"

@dataclass
class AttackSuiteResult:
    """What a suite of attacks brought back: per attack its curve and best point, and the best over all.

    ``attacks``: ``{name: {"kind": str, "settings": str, "curve": [...], "best": {...} | None, "diverged_at": ...}}``;
    every curve starts with the same pre-attack point (step 0). A fine-tuning attack's later points are
    its evaluations by step and ``diverged_at`` the step where it broke the model; an attack that trains
    nothing has a point per variant it tried (``"variant": "int4"``, ``"4 in context"``, a template) and
    ``diverged_at`` names the first variant that broke the model. ``best_point()`` is the attacker's best
    over every attack of every kind, diverged evaluations never counted.
    """

    metric: str
    greater_is_better: bool
    attacks: dict[str, dict[str, Any]]

    @property
    def start_point(self) -> dict[str, float]:
        """The evaluation of the model before any attack."""
        return next(iter(self.attacks.values()))["curve"][0]

    @property
    def all_diverged(self) -> bool:
        """Every attack broke the model before it brought anything back: the suite measured nothing about robustness.
        An attack whose best valid point comes after its start (recovered at step 10, diverged at step 40) counts with it."""
        # Over the attacks that train: those that train nothing often cannot break a model (in-context text leaves the
        # weights as they are), so they would hide a suite whose every relearning attack measured nothing.
        attacks = [a for a in self.attacks.values() if a["kind"] != NOT_ATTACKED and ATTACK_KINDS[a["kind"]].trains] or list(self.attacks.values())
        return all(attack["diverged_at"] is not None and (attack["best"] is None or is_start(attack["best"])) for attack in attacks)

    def best_point(self) -> dict[str, Any]:
        """The attacker's best point over all attacks: ``{"attack": name, "step": ..., <every metric>}``."""
        candidates = [
            {"attack": name, **attack["best"]} for name, attack in self.attacks.items() if attack["best"] is not None
        ]
        if not candidates:
            raise ValueError(f"no attack of the suite has a finite, non-diverged evaluation of {self.metric!r}")
        pick = max if self.greater_is_better else min
        return pick(candidates, key=lambda point: point[self.metric])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RESULT_FILE = "attack_result.json"


def same_settings(saved: dict[str, Any], current: dict[str, Any], config_class: type) -> bool:
    """A saved attack ran with ``current``'s settings. A setting the saved file lacks was added to the config
    since: the attack ran as its default does, so it matches only at that default."""
    defaults = {f.name: f.default for f in dataclasses.fields(config_class) if f.default is not dataclasses.MISSING}
    defaults |= {f.name: f.default_factory() for f in dataclasses.fields(config_class) if f.default_factory is not dataclasses.MISSING}
    return all(saved[name] == value if name in saved else value == defaults.get(name, object()) for name, value in current.items())


def is_start(point: dict[str, Any]) -> bool:
    """The point is the unattacked model's (step 0 of a curve, no variant)."""
    return point["step"] == 0 and "variant" not in point


def run_fingerprint(model: nn.Module, *datasets: Any) -> str:
    """A digest of the model's weights and the data (``datasets`` fingerprints, evaluators' data):
    a saved attack result is reused only for the very same model and data."""
    digest = weights_digest(model)
    for data in datasets:
        digest.update(_data_key(data).encode())
    return digest.hexdigest()


def _data_key(data: Any) -> str:
    if data is None:
        return "none"
    if isinstance(data, Dataset):
        return data._fingerprint
    if isinstance(data, dict):
        return "{" + ",".join(f"{k}:{_data_key(v)}" for k, v in sorted(data.items())) + "}"
    if dataclasses.is_dataclass(data):  # an evaluator: its data and every setting it measures with
        return f"{type(data).__name__}(" + ",".join(f"{f.name}={_data_key(getattr(data, f.name))}" for f in dataclasses.fields(data)) + ")"
    return repr(data)


class AttackSuite:
    """A named set of relearning attacks (``attacks: {name: RelearnAttackConfig}``, kept as ``.attacks``).

    ``run`` attacks a model with each one, every time on a fresh copy of its weights (one extra copy
    held at a time), and returns an ``AttackSuiteResult``. All attacks must agree on what the
    attacker optimises (``metric_for_best_model``, ``greater_is_better``), so their points compare.
    """

    def __init__(self, attacks: dict[str, RelearnAttackConfig]):
        if not attacks:
            raise ValueError("an AttackSuite needs at least one attack")
        for name, config in attacks.items():
            if not isinstance(config, RelearnAttackConfig):
                raise TypeError(f"attack {name!r} must be a RelearnAttackConfig, got {type(config).__name__}")
            if not config.metric_for_best_model:
                raise ValueError(f"attack {name!r} has no metric_for_best_model: set what the attacker optimises")
        objectives = {(c.metric_for_best_model.removeprefix("eval_"), bool(c.greater_is_better)) for c in attacks.values()}
        if len(objectives) > 1:
            raise ValueError(
                f"the attacks optimise different things {sorted(objectives)}: give every attack the same "
                "metric_for_best_model and greater_is_better, or their best points do not compare"
            )
        self.attacks = dict(attacks)

    @classmethod
    def preset(cls, name: str, output_dir: str = "attack_suite", names: Sequence[str] | None = None, **common: Any) -> AttackSuite:
        """The ``quick``, ``standard`` or ``paper`` suite (see ``PRESETS``), or the attacks ``names`` of it.

        ``common``: ``RelearnAttackConfig`` fields for every attack, overriding the preset's (e.g.
        ``metric_for_best_model="eval_facts_accuracy"``, ``per_device_train_batch_size=8``, or
        ``max_steps=30`` to shorten every attack). Attack ``k`` writes to ``<output_dir>/<k>``.
        """
        if name not in PRESETS:
            raise ValueError(f"unknown attack suite preset {name!r}; presets: {', '.join(PRESETS)}")
        unknown = sorted(set(names or ()) - set(PRESETS[name]))
        if unknown:
            raise ValueError(f"preset {name!r} has no attack {unknown}; its attacks: {', '.join(PRESETS[name])}")
        common.setdefault("report_to", "none")
        # A kind's own settings (use_peft: fine_tune's) reach the attacks of that kind only; every other setting, all.
        owner = {setting: kind.name for kind in ATTACK_KINDS.values() for setting in kind.settings}
        default_kind = RelearnAttackConfig.kind
        return cls(
            {
                attack: RelearnAttackConfig(**{
                    **settings,
                    **{k: v for k, v in common.items() if owner.get(k, settings.get("kind", default_kind)) == settings.get("kind", default_kind)},
                    "output_dir": str(Path(output_dir) / attack),
                })  # fmt: skip
                for attack, settings in PRESETS[name].items()
                if names is None or attack in names
            }
        )

    def in_folder(self, name: str) -> AttackSuite:
        """The same attacks, each writing to ``<its output_dir>/<name>`` (one suite, many models)."""
        return AttackSuite(
            {attack: dataclasses.replace(config, output_dir=str(Path(config.output_dir) / name)) for attack, config in self.attacks.items()}
        )

    @property
    def metric(self) -> str:
        return next(iter(self.attacks.values())).metric_for_best_model.removeprefix("eval_")

    @property
    def greater_is_better(self) -> bool:
        return bool(next(iter(self.attacks.values())).greater_is_better)

    @property
    def needs_retain(self) -> bool:
        return any(config.interleave_retain for config in self.attacks.values())

    def run(
        self,
        model: PreTrainedModel | str,
        attack_dataset: Dataset,
        eval_dataset: dict[str, Dataset],
        evaluators: dict[str, Evaluator] | None = None,
        processing_class: PreTrainedTokenizerBase | None = None,
        retain_dataset: Dataset | None = None,
        resume: bool = False,
        wandb_group: str | None = None,
        run_prefix: str = "attack",
    ) -> AttackSuiteResult:
        """Run every attack on its own copy of ``model`` (never modified) and collect the curves.

        The unattacked model is evaluated once, by the first attack, and that point starts every
        curve. ``retain_dataset`` is needed by retain-interleaved attacks only. Each finished attack
        writes ``attack_result.json`` to its ``output_dir``; with ``resume=True`` an attack whose file
        matches this model's weights, the data and the attack's settings is read back, not rerun, so
        an interrupted suite loses at most the attack in progress. Attacks that report to W&B each
        log into their own run, ``<run_prefix>/<attack>`` in ``wandb_group``.
        """
        if self.needs_retain and retain_dataset is None:
            interleaved = [name for name, config in self.attacks.items() if config.interleave_retain]
            raise ValueError(f"attacks {interleaved} interleave retain steps: pass retain_dataset to AttackSuite.run")
        model, processing_class = load_causal_lm(model, processing_class)
        for config in self.attacks.values():  # refused now, not after the attacks before it ran
            ATTACK_KINDS[config.kind].check(model, config)
        evaluators = evaluators or {}
        key = run_fingerprint(model, attack_dataset, eval_dataset, evaluators, retain_dataset)
        wandb_group = wandb_group or group_name(None, "attacks")  # once: every attack of the suite in one group
        results: dict[str, dict[str, Any]] = {}
        start = None
        progress = tqdm(self.attacks.items(), desc="attack suite", unit="attack", disable=not PartialState().is_main_process)
        for name, config in progress:
            progress.set_postfix_str(name)
            saved = Path(config.output_dir) / RESULT_FILE
            if resume and saved.is_file():
                result = json.loads(saved.read_text())
                saved_key, saved_settings = result.pop("key")
                if saved_key == key and same_settings(json.loads(saved_settings), json.loads(config.to_json_string()), type(config)):
                    results[name] = result
                    start = start or {k: v for k, v in result["curve"][0].items() if k != "step"}
                    continue
            settings = config.describe()
            with wandb_run(config.report_to, wandb_group, f"{run_prefix}/{name}", "attack", config={"kind": config.kind, "settings": settings}) as run:
                attacked = ATTACK_KINDS[config.kind].run(
                    model, config, attack_dataset=attack_dataset, eval_dataset=eval_dataset, evaluators=evaluators,
                    processing_class=processing_class, retain_dataset=retain_dataset, start=start, wandb=run,
                )  # fmt: skip
            curve = attacked.curve
            start = start or {k: v for k, v in curve[0].items() if k != "step"}
            # The step where a fine-tuning attack broke the model, or the first variant that did of one that trains nothing.
            diverged_at = next((point.get("variant", point["step"]) for point in curve if point.get("diverged")), None)
            if attacked.note:
                logger.warning(f"attack {name!r} ({settings}): {attacked.note}")
                settings += f" ({attacked.note})"
            results[name] = {"kind": config.kind, "settings": settings, "curve": curve, "best": attacked.best, "diverged_at": diverged_at}
            self._save(saved, results[name], key, config)
        return AttackSuiteResult(self.metric, self.greater_is_better, results)

    @staticmethod
    def _save(path: Path, result: dict[str, Any], key: str, config: RelearnAttackConfig) -> None:
        if PartialState().is_main_process:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({**result, "key": [key, config.to_json_string()]}))

    def unattacked(
        self,
        model: PreTrainedModel | str,
        attack_dataset: Dataset,
        eval_dataset: dict[str, Dataset],
        evaluators: dict[str, Evaluator] | None = None,
        processing_class: PreTrainedTokenizerBase | None = None,
    ) -> AttackSuiteResult:
        """The model evaluated once, not attacked: a result whose only "attack", ``unattacked``, is
        its pre-attack point. For an untouched baseline already at the metric's ceiling (every fact
        known), where no attack can raise the attacker's best and running the suite costs hours."""
        model, processing_class = load_causal_lm(model, processing_class)
        config = next(iter(self.attacks.values()))  # any attack's evaluation settings will do
        curve = [{"step": 0, **evaluate_point(model, config, eval_dataset, evaluators or {}, processing_class)}]
        return AttackSuiteResult(
            self.metric, self.greater_is_better, {"unattacked": {"kind": NOT_ATTACKED, "settings": "not attacked", "curve": curve, "best": curve[0], "diverged_at": None}}
        )

