"""``RobustnessReport``: what was forgotten and how much of it a relearning attack brought back."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import Trainer

    from ..attacks import AttackSuiteResult

STAGES = ("before", "after_unlearning", "attack_best")


def finite_or_null(value: Any) -> Any:
    """``value`` with every NaN/inf float replaced by None, so that JSON files stay valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value


def disruption(retain_before: float, retain_after: float) -> dict[str, float]:
    """Retain-loss change, absolute (nats) and relative to the starting loss."""
    return {"absolute": retain_after - retain_before, "relative": (retain_after - retain_before) / retain_before}


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
        results: dict[str, AttackSuiteResult],
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
                    if metric != "attack":
                        flat[f"robustness/{run}/{stage}/{metric}"] = value
            if "retain_loss" in self.before:
                change = disruption(self.before["retain_loss"], self.runs[run]["after_unlearning"]["retain_loss"])
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
        for run, result in self.runs.items():
            for stage in STAGES:
                values = self.stage(run, stage)
                if values is None:
                    lines.append(f"| {run} | attack best | every attack diverged: no robustness figure |" + " |" * (len(metrics) - 1))
                    continue
                label = stage.replace("_", " ")
                if stage == "attack_best":
                    label += f" ({values['attack']}, step {values['step']})"
                cells = [f"{values[m]:.4f}" if m in values else "" for m in metrics]
                lines.append(f"| {run} | {label} | " + " | ".join(cells) + " |")
        lines.append("")
        for run, result in self.runs.items():
            if "retain_loss" in self.before:
                change = disruption(self.before["retain_loss"], result["after_unlearning"]["retain_loss"])
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
        lines += ["", "Per attack (best point of each; `diverged`: the step where the attack broke the model):", ""]
        shown = [self.best_metric] + (["retain_loss"] if "retain_loss" in metrics and self.best_metric != "retain_loss" else [])
        lines.append("| run | attack | settings | best step | " + " | ".join(shown) + " | diverged |")
        lines.append("|---|---|---|---|" + "---|" * len(shown) + "---|")
        for run, result in self.runs.items():
            for name, attack in result["attacks"].items():
                best = attack["best"] or {}
                cells = [f"{best[m]:.4f}" if m in best else "" for m in shown]
                diverged = "" if attack["diverged_at"] is None else f"at step {attack['diverged_at']}"
                lines.append(f"| {run} | {name} | {attack['settings']} | {best.get('step', '')} | " + " | ".join(cells) + f" | {diverged} |")
        return "\n".join(lines) + "\n"

    def plot(self, path: str | Path) -> Path:
        """PNG of the attack curves: one column per run, one line per attack; rows: the attacker's metric and
        the retain loss. Diverged evaluations are drawn as red crosses."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = [self.best_metric] + (["retain_loss"] if "retain_loss" in self.before and self.best_metric != "retain_loss" else [])
        figure, axes = plt.subplots(len(rows), len(self.runs), figsize=(4.5 * len(self.runs), 3.2 * len(rows)), squeeze=False)
        for column, (run, result) in enumerate(self.runs.items()):
            for row, metric in enumerate(rows):
                axis = axes[row][column]
                for name, attack in result["attacks"].items():
                    points = [p for p in attack["curve"] if metric in p]
                    axis.plot([p["step"] for p in points], [p[metric] for p in points], marker="o", markersize=3, label=name)
                    broken = [p for p in points if p.get("diverged")]
                    axis.plot([p["step"] for p in broken], [p[metric] for p in broken], "x", color="red", markersize=8)
                axis.set_title(f"{run}: {metric}")
                axis.set_xlabel("attack step")
                axis.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
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
                rows.append([run, stage, attack, values.get("step")] + [values.get(m) for m in metrics])
        return ["run", "stage", "attack", "step", *metrics], rows

    def wandb_media(self) -> dict[str, Any]:
        """``{"robustness/table": wandb.Table, "robustness/curves": wandb.Image}`` for a W&B run."""
        import tempfile

        import wandb

        columns, rows = self.table()
        image = wandb.Image(str(self.plot(Path(tempfile.mkdtemp()) / "curves.png")))
        return {"robustness/table": wandb.Table(columns=columns, data=rows), "robustness/curves": image}
