"""`evaluate` modules shipped with hf_unlearn, loadable with ``evaluate.load(metric_path(name))``."""

from pathlib import Path

METRICS = ("mcq_accuracy", "fact_accuracy")


def metric_path(name: str) -> str:
    """Local path of a metric module for ``evaluate.load``."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; available: {', '.join(METRICS)}")
    return str(Path(__file__).parent / name)
