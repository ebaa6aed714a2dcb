"""What a result was computed with: the package versions and the machine.

Benchmarks write it beside their figures, the golden-weights file records it, and ``hf-unlearn env``
prints it for bug reports. Versions are read from the installed distributions' metadata, so nothing
heavy is imported until ``devices=True`` asks torch about accelerators.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
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


def cpu_model() -> str:
    """The CPU's model name ("AMD EPYC 7B13", "Intel(R) Xeon(R) Platinum 8481C"): kernels, and so the last bits of
    float results, differ between CPU families. From /proc/cpuinfo on Linux, else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_has_bf16_units() -> bool:
    """Whether the CPU computes bf16 in hardware (AVX512-BF16 or AMX). Without them torch emulates it: bf16 autocast
    made a SmolLM2-135M training step 13x slower than float32 on an AVX2-only AMD EPYC (faster where the units exist)."""
    import torch

    capabilities = torch.cpu.get_capabilities()
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def environment(devices: bool = True) -> dict[str, Any]:
    """Python, platform, CPU model and count, the package versions and (``devices``) torch's threads, its CPU kernels'
    instruction set and the accelerators."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "packages": package_versions(),
    }
    if devices:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        info["cpu_bf16_units"] = cpu_has_bf16_units()
        info["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return info
