"""``RobustnessReport``: what was forgotten and how much of it a relearning attack brought back."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from . import disruption
from .disruption import METRIC

if TYPE_CHECKING:
    from transformers import Trainer

STAGES = ("before", "after_unlearning", "attack_best")


class SuiteResult(Protocol):
    """What the report reads of an attack suite's result (``hf_unlearn.attacks.AttackSuiteResult``, a layer above:
    the report names only what it needs)."""

    metric: str
    greater_is_better: bool
    attacks: dict[str, dict[str, Any]]

    @property
    def start_point(self) -> dict[str, float]: ...

    @property
    def all_diverged(self) -> bool: ...

    def best_point(self) -> dict[str, Any]: ...


def point_label(point: dict[str, Any]) -> str:
    """Where on its attack a point is: ``step 30`` of a fine-tuning attack, or the variant an attack that trains
    nothing tried (``int4``, ``4 in context``, a prompt template)."""
    return str(point["variant"]) if "variant" in point else f"step {point['step']}"


def _one_line(text: str) -> str:
    """Text for a markdown code span: newlines shown as ⏎, backticks as quotes."""
    return text.replace("\n", "⏎").replace("`", "'")


def finite_or_null(value: Any) -> Any:
    """``value`` with every NaN/inf float replaced by None, so that JSON files stay valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value


@dataclass
class RobustnessReport:
    """Per run (a method, or ``no_unlearning``): metrics before unlearning, after it, and at the
    attacker's best point over an attack suite, plus every attack's curve.

    ``best_metric`` is what the attacker optimises (``forget_loss`` lowest, or an accuracy highest);
    every other evaluated metric is reported at the same point, with the attack that reached it.
    Diverged evaluations never count; a run whose every attack diverged has no ``attack_best``
    (None) and the report says so in words. Build it with ``from_suites``; ``save`` writes JSON,
    markdown and a PNG of the attack curves.
    """

    title: str
    best_metric: str
    greater_is_better: bool
    before: dict[str, float]
    runs: dict[str, dict[str, Any]]
    details: dict[str, Any] = field(default_factory=dict)
    baseline: str = "no_unlearning"

    @classmethod
    def from_suites(
        cls,
        title: str,
        results: dict[str, SuiteResult],
        baseline: str = "no_unlearning",
        details: dict[str, Any] | None = None,
    ) -> RobustnessReport:
        """``results``: {run name: ``AttackSuite.run`` result}; ``baseline`` names the suite run on the
        untouched model, whose starting point is the "before" of every run."""
        if baseline not in results:
            raise ValueError(f"the baseline run {baseline!r} is not among the runs {sorted(results)}")
        objectives = {(r.metric, r.greater_is_better) for r in results.values()}
        if len(objectives) > 1:
            raise ValueError(f"the runs' attacks optimise different metrics {sorted(objectives)}: they do not compare")
        runs = {
            name: {
                "after_unlearning": result.start_point,
                "attack_best": None if result.all_diverged else result.best_point(),
                "all_diverged": result.all_diverged,
                "attacks": result.attacks,
            }
            for name, result in results.items()
        }
        reference = results[baseline]
        return cls(
            title, reference.metric, reference.greater_is_better, runs[baseline]["after_unlearning"], runs, details or {}, baseline
        )

    def stage(self, run: str, stage: str) -> dict[str, float] | None:
        return self.before if stage == "before" else self.runs[run][stage]

    def metrics(self) -> list[str]:
        """Reported metric names: the attacker's metric first."""
        names = {key for key, value in self.before.items() if key != "step" and isinstance(value, (int, float))}
        return [self.best_metric] + sorted(names - {self.best_metric})

    def summary(self) -> dict[str, float]:
        """Flat scalars ``robustness/<run>/<stage>/<metric>`` (and retain-loss disruption), for loggers."""
        flat = {}
        for run in self.runs:
            for stage in STAGES:
                for metric, value in (self.stage(run, stage) or {}).items():
                    if isinstance(value, (int, float)):
                        flat[f"robustness/{run}/{stage}/{metric}"] = value
            if METRIC in self.before:
                change = disruption.change(self.before[METRIC], self.runs[run]["after_unlearning"][METRIC])
                flat[f"robustness/{run}/disruption/retain_loss_change"] = change["absolute"]
                flat[f"robustness/{run}/disruption/retain_loss_change_relative"] = change["relative"]
        return flat

    def to_markdown(self) -> str:
        metrics = self.metrics()
        direction = "highest" if self.greater_is_better else "lowest"
        num_attacks = max(len(result["attacks"]) for result in self.runs.values())
        lines = [
            f"## {self.title}",
            "",
            f"Attack best = the attacker's best evaluation over the {num_attacks} attacks of the suite ({direction} "
            f"held-out `{self.best_metric}`), the unattacked model included. Diverged evaluations (NaN/inf, or a model "
            "the attack broke) never count.",
            "",
            "| run | stage | " + " | ".join(metrics) + " |",
            "|---|---|" + "---|" * len(metrics),
        ]
        for run in self.runs:
            for stage in STAGES:
                if run == self.baseline and stage == "after_unlearning":  # the untouched model was not unlearned
                    continue
                values = self.stage(run, stage)
                if values is None:
                    lines.append(f"| {run} | attack best | every attack diverged: no robustness figure |" + " |" * (len(metrics) - 1))
                    continue
                label = stage.replace("_", " ")
                if stage == "attack_best":
                    label += f" ({values['attack']}, {point_label(values)})"
                cells = [f"{values[m]:.4f}" if m in values else "" for m in metrics]
                lines.append(f"| {run} | {label} | " + " | ".join(cells) + " |")
        lines.append("")
        for run, result in self.runs.items():
            if METRIC in self.before:
                change = disruption.change(self.before[METRIC], result["after_unlearning"][METRIC])
                lines.append(
                    f"- {run}: retain loss change after unlearning {change['absolute']:+.4f} nats "
                    f"({100 * change['relative']:+.2f} %)"
                )
            if result["all_diverged"]:
                lines.append(f"- {run}: every attack diverged, so the suite says nothing about its robustness")
            elif run != self.baseline and self.runs[self.baseline]["attack_best"] is not None:
                ours, theirs = result["attack_best"][self.best_metric], self.runs[self.baseline]["attack_best"][self.best_metric]
                ratio = f" ({ours / theirs:.2f}x)" if theirs else ""
                lines.append(f"- {run}: attacker's best `{self.best_metric}` {ours:.4f} vs {theirs:.4f} for {self.baseline}{ratio}")
        lines += ["", "Per attack (best point of each; `diverged`: where the attack broke the model; kinds: `fine_tune` trains, "
                  "`quantize`, `in_context` and `prompt` only evaluate):", ""]  # fmt: skip
        shown = [self.best_metric] + ([METRIC] if METRIC in metrics and self.best_metric != METRIC else [])
        lines.append("| run | attack | kind | settings | best at | " + " | ".join(shown) + " | diverged |")
        lines.append("|---|---|---|---|---|" + "---|" * len(shown) + "---|")
        for run, result in self.runs.items():
            for name, attack in result["attacks"].items():
                best = attack["best"] or {}
                cells = [f"{best[m]:.4f}" if m in best else "" for m in shown]
                at = attack["diverged_at"]
                diverged = "" if at is None else (f"at step {at}" if isinstance(at, int) else f"at {at}")
                lines.append(
                    f"| {run} | {name} | {attack['kind']} | {attack['settings']} | {point_label(best) if best else ''} | "
                    + " | ".join(cells) + f" | {diverged} |"
                )
        samples = self.text_samples_markdown()
        return "\n".join(lines) + "\n" + ("\n" + samples if samples else "")

    def text_samples(self) -> list[dict[str, str]]:
        """The held-out forget prompts with the greedy completions of the untouched model, of each unlearned model and
        of each at the attacker's best (where its point recorded text; ``RelearnAttackConfig.text_samples``):
        ``[{"prompt": ..., "expected": ..., "untouched": ..., "<run>": ..., "<run> attacked": ...}]``."""
        columns = {"untouched": self.runs[self.baseline]["after_unlearning"].get("samples")}
        for run, result in self.runs.items():
            if run != self.baseline:
                columns[run] = result["after_unlearning"].get("samples")
                columns[f"{run} attacked"] = (result["attack_best"] or {}).get("samples")
        reference = columns["untouched"] or next((samples for samples in columns.values() if samples), None)
        if not reference:
            return []
        rows = []
        for i, sample in enumerate(reference):
            row = {"prompt": sample["prompt"], **({"expected": sample["expected"]} if "expected" in sample else {})}
            for name, samples in columns.items():
                # An in-context or prompt attack's best saw a prefixed prompt: its text is shown, its prompt is in the JSON.
                row[name] = samples[i]["completion"] if samples and i < len(samples) else None
            rows.append(row)
        return rows

    def text_samples_markdown(self) -> str:
        """``text_samples`` as a markdown section ("" when no attack recorded text)."""
        rows = self.text_samples()
        if not rows:
            return ""
        names = [k for k in rows[0] if k not in ("prompt", "expected")]
        lines = ["### What the models say", "", "Greedy completions of held-out forget prompts (never trained on by the method or "
                 "the attacks); `attacked`: the model at the attacker's best point.", ""]  # fmt: skip
        for row in rows:
            lines.append(f"- **prompt:** `{_one_line(row['prompt'])}`" + (f" (expected: `{_one_line(row['expected'])}`)" if "expected" in row else ""))
            lines += [f"  - {name}: `{_one_line(row[name])}`" if row[name] is not None else f"  - {name}: (no text recorded)" for name in names]
        return "\n".join(lines) + "\n"

    def curve_metrics(self) -> list[str]:
        """The metrics the curves show: the attacker's, and the retain loss where it was measured."""
        return [self.best_metric] + ([METRIC] if METRIC in self.before and self.best_metric != METRIC else [])

    def plot(self, path: str | Path) -> Path:
        """PNG of the attack curves: one axis per metric, every model on it in its own colour (so each unlearned
        model is read against the untouched one on the same scale), a thin line per fine-tuning attack, a diamond
        per variant of an attack that trains nothing (at step 0) and a star at the attacker's best. Diverged
        evaluations are drawn as red crosses."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        metrics = self.curve_metrics()
        figure, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4), squeeze=False)
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for axis, metric in zip(axes[0], metrics):
            for index, (run, result) in enumerate(self.runs.items()):
                colour = colours[index % len(colours)]
                for attack in result["attacks"].values():
                    points = [p for p in attack["curve"] if metric in p]
                    # Evaluations by step make a line; the variants an attack that trains nothing tried, markers.
                    tried = any("variant" in p for p in points)
                    style = {"linestyle": "none", "marker": "D", "markersize": 5} if tried else {"linewidth": 1}
                    axis.plot([p["step"] for p in points], [p[metric] for p in points], color=colour, alpha=0.45, **style)
                    broken = [p for p in points if p.get("diverged")]
                    axis.plot([p["step"] for p in broken], [p[metric] for p in broken], "x", color="red", markersize=8)
                best = result["attack_best"]
                if best is not None and metric in best:
                    axis.plot([best["step"]], [best[metric]], "*", color=colour, markersize=13, markeredgecolor="black")
                axis.plot([], [], color=colour, label=f"{run} ({len(result['attacks'])} attacks; star: attacker's best)")
            axis.set_title(metric)
            axis.set_xlabel("attack step")
            axis.grid(alpha=0.3)
            axis.legend(fontsize=7)
        figure.suptitle(self.title)
        figure.tight_layout()
        path = Path(path)
        figure.savefig(path, dpi=110)
        plt.close(figure)
        return path

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, output_dir: str | Path, name: str = "robustness_report") -> dict[str, Path]:
        """Write ``<name>.json``, ``<name>.md`` and ``<name>.png`` into ``output_dir``."""
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        paths = {"json": output_dir / f"{name}.json", "markdown": output_dir / f"{name}.md"}
        paths["json"].write_text(json.dumps(finite_or_null(self.to_dict()), indent=2, allow_nan=False))
        paths["markdown"].write_text(self.to_markdown())
        paths["plot"] = self.plot(output_dir / f"{name}.png")
        return paths

    @classmethod
    def load(cls, path: str | Path) -> RobustnessReport:
        return cls(**json.loads(Path(path).read_text()))

    def log(self, trainer: Trainer) -> None:
        """Send ``summary()`` through ``trainer.log``, hence to every ``report_to`` integration."""
        trainer.log(self.summary())

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """The headline table as (columns, rows): every run at every stage, with the attack at the attacker's best."""
        metrics = self.metrics()
        rows = []
        for run in self.runs:
            for stage in STAGES:
                values = self.stage(run, stage) or {}
                attack = values.get("attack", "every attack diverged" if stage == "attack_best" and not values else "")
                if stage == "attack_best" and "attack" in values:
                    attack = f"{attack} ({self.runs[run]['attacks'][attack]['kind']}, {point_label(values)})"
                rows.append([run, stage, attack, values.get("step")] + [values.get(m) for m in metrics])
        return ["run", "stage", "attack", "step", *metrics], rows

    def curve_table(self) -> tuple[list[str], list[list[Any]]]:
        """Every evaluation of every attack as (columns, rows): model, attack, kind, ``model/attack``, step, variant,
        the curve metrics, diverged."""
        metrics = self.curve_metrics()
        rows = [
            [run, name, attack["kind"], f"{run}/{name}", point["step"], point.get("variant"), *[point.get(m) for m in metrics],
             bool(point.get("diverged"))]  # fmt: skip
            for run, result in self.runs.items()
            for name, attack in result["attacks"].items()
            for point in attack["curve"]
        ]
        return ["model", "attack", "kind", "series", "step", "variant", *metrics, "diverged"], rows

    def wandb_media(self) -> dict[str, Any]:
        """For a W&B run: the headline table, the curves as a table and as one interactive line chart per metric
        (a line per model and attack), and the PNG."""
        import tempfile

        import wandb

        columns, rows = self.table()
        curve_columns, curve_rows = self.curve_table()
        curves = wandb.Table(columns=curve_columns, data=curve_rows)
        media = {
            "robustness/table": wandb.Table(columns=columns, data=rows),
            "robustness/curves_table": curves,
            "robustness/curves": wandb.Image(str(self.plot(Path(tempfile.mkdtemp()) / "curves.png"))),
        }
        samples = self.text_samples()
        if samples:
            media["robustness/text_samples"] = wandb.Table(columns=list(samples[0]), data=[list(row.values()) for row in samples])
        for metric in self.curve_metrics():
            media[f"robustness/curve/{metric}"] = wandb.plot.line(curves, "step", metric, stroke="series", title=f"{metric} under attack")
        return media
