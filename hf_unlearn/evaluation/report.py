"""``RobustnessReport``: what was forgotten and how much of it a relearning attack brought back."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import Trainer

    from ..relearn import RelearnAttackTrainer

STAGES = ("before", "after_unlearning", "attack_best")


def disruption(retain_before: float, retain_after: float) -> dict[str, float]:
    """Retain-loss change, absolute (nats) and relative to the starting loss."""
    return {"absolute": retain_after - retain_before, "relative": (retain_after - retain_before) / retain_before}


@dataclass
class RobustnessReport:
    """Per run (a method, or ``no_unlearning``): metrics before unlearning, after it, and at the
    relearning attacker's best point, plus the whole attack curve.

    ``best_metric`` is what the attacker optimises (``forget_loss`` lowest, or an accuracy highest);
    every other evaluated metric is reported at the same point. Build it from attacked trainers
    with ``from_attacks``; ``save`` writes JSON, markdown and a PNG of the attack curves.
    """

    title: str
    best_metric: str
    greater_is_better: bool
    before: dict[str, float]
    runs: dict[str, dict[str, Any]]
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_attacks(
        cls,
        title: str,
        attacks: dict[str, RelearnAttackTrainer],
        baseline: str = "no_unlearning",
        details: dict[str, Any] | None = None,
    ) -> RobustnessReport:
        """``attacks``: {run name: trained RelearnAttackTrainer}; ``baseline`` names the attack on the
        untouched model, whose starting point is the "before" of every run."""
        if baseline not in attacks:
            raise ValueError(f"the baseline run {baseline!r} is not among the attacks {sorted(attacks)}")
        reference = attacks[baseline].args
        runs = {}
        for name, trainer in attacks.items():
            curve = trainer.attack_curve()
            if not curve or curve[0]["step"] != 0:
                raise ValueError(f"attack {name!r} has no evaluation at step 0: set eval_on_start=True")
            runs[name] = {"after_unlearning": curve[0], "attack_best": trainer.best_point(), "attack_curve": curve}
        return cls(
            title=title,
            best_metric=reference.metric_for_best_model.removeprefix("eval_"),
            greater_is_better=bool(reference.greater_is_better),
            before=runs[baseline]["after_unlearning"],
            runs=runs,
            details=details or {},
        )

    def stage(self, run: str, stage: str) -> dict[str, float]:
        return self.before if stage == "before" else self.runs[run][stage]

    def metrics(self) -> list[str]:
        """Reported metric names: the attacker's metric first."""
        names = {key for key in self.before if key != "step"}
        return [self.best_metric] + sorted(names - {self.best_metric})

    def summary(self) -> dict[str, float]:
        """Flat scalars ``robustness/<run>/<stage>/<metric>`` (and retain-loss disruption), for loggers."""
        flat = {}
        for run in self.runs:
            for stage in STAGES:
                for metric, value in self.stage(run, stage).items():
                    flat[f"robustness/{run}/{stage}/{metric}"] = value
            if "retain_loss" in self.before:
                change = disruption(self.before["retain_loss"], self.runs[run]["after_unlearning"]["retain_loss"])
                flat[f"robustness/{run}/disruption/retain_loss_change"] = change["absolute"]
                flat[f"robustness/{run}/disruption/retain_loss_change_relative"] = change["relative"]
        return flat

    def to_markdown(self) -> str:
        metrics = self.metrics()
        direction = "highest" if self.greater_is_better else "lowest"
        lines = [
            f"## {self.title}",
            "",
            f"Attack best = the relearning attacker's best evaluation ({direction} held-out `{self.best_metric}`), "
            "the unattacked model included.",
            "",
            "| run | stage | " + " | ".join(metrics) + " |",
            "|---|---|" + "---|" * len(metrics),
        ]
        for run in self.runs:
            for stage in STAGES:
                values = self.stage(run, stage)
                label = stage.replace("_", " ") + (f" (step {values['step']})" if stage == "attack_best" else "")
                cells = [f"{values[m]:.4f}" if m in values else "" for m in metrics]
                lines.append(f"| {run} | {label} | " + " | ".join(cells) + " |")
        if "retain_loss" in self.before:
            lines.append("")
            for run in self.runs:
                change = disruption(self.before["retain_loss"], self.runs[run]["after_unlearning"]["retain_loss"])
                lines.append(
                    f"- {run}: retain loss change after unlearning {change['absolute']:+.4f} nats "
                    f"({100 * change['relative']:+.2f} %)"
                )
        return "\n".join(lines) + "\n"

    def plot(self, path: str | Path) -> Path:
        """PNG of the attack curves: one panel per metric, one line per run."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        metrics = self.metrics()
        figure, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.5), squeeze=False)
        for axis, metric in zip(axes[0], metrics):
            for run, result in self.runs.items():
                points = [p for p in result["attack_curve"] if metric in p]
                axis.plot([p["step"] for p in points], [p[metric] for p in points], marker="o", label=run)
            axis.set_title(metric)
            axis.set_xlabel("attack step")
            axis.grid(alpha=0.3)
        axes[0][0].legend()
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
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2))
        paths["markdown"].write_text(self.to_markdown())
        paths["plot"] = self.plot(output_dir / f"{name}.png")
        return paths

    @classmethod
    def load(cls, path: str | Path) -> RobustnessReport:
        return cls(**json.loads(Path(path).read_text()))

    def log(self, trainer: Trainer) -> None:
        """Send ``summary()`` through ``trainer.log``, hence to every ``report_to`` integration."""
        trainer.log(self.summary())
