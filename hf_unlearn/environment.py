"""What a result was computed with: the package versions and the machine.

Benchmarks write it beside their figures, the golden-weights file records it, and ``hf-unlearn env``
prints it for bug reports. Versions are read from the installed distributions' metadata, so nothing
heavy is imported until ``devices=True`` asks torch about accelerators.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

PACKAGES = ("hf_unlearn", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "huggingface_hub", "tokenizers",
            "safetensors", "optuna", "wandb", "lm_eval", "numpy")  # fmt: skip


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (None where it is not installed)."""
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment(devices: bool = True) -> dict[str, Any]:
    """Python, platform, CPU count, the package versions and (``devices``) torch's threads and accelerators."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "packages": package_versions(),
    }
    if devices:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return info
