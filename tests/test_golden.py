"""Every method and switch combination ends where it ended when the golden file was made.

A refactor must leave each method's trained weights unchanged. To keep ``tests/golden_weights.json`` small, each
trained tensor is stored as its projections on 8 seeded random directions and its sum.

The runs are in float64, end to end (the package keeps half-precision state in fp32 but never rounds a float64
model down: ``gradients.at_least_float32``). Kernels differ between CPUs (AMD EPYC, Intel Xeon with AMX, the
instruction set torch picks) and so does the order of their sums; in float32 that moved a fingerprint by 2e-5 between
two machines with identical packages. In float64 an order difference is ~1e-16 relative per operation.
``test_configurations_are_well_conditioned`` perturbs the start by ``KERNEL_PERTURBATION`` (1e-14 relative,
about 50 float64 ulps: more than reordering a sum of the tiny model's widths changes) and requires every
configuration to move by at most a tenth of ``TOLERANCE``; a change of 1e-6 in the weights moves the fingerprints
by far more than ``TOLERANCE``. So the golden test sees code changes, not the machine. The file records the
environment, CPU model included, it was written in. Circuit Breakers runs as a LoRA adapter with random (not zero)
initial B: from the exact reference its first update is rounding noise (see ``hf_unlearn/methods/circuit_breakers.py``).

    python tests/test_golden.py [NAME ...]           # rewrite entries (only when a change is *meant* to alter results)
    ATEN_CPU_CAPABILITY=avx2 python tests/test_golden.py --check   # the largest differences, with other kernels
"""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from conftest import FORGET_TEXTS, RETAIN_TEXTS, char_tokenizer, tiny_llama, unlearn_config
from datasets import Dataset
from peft import LoraConfig

from hf_unlearn import (
    CIRConfig,
    CircuitBreakersConfig,
    GradDiffConfig,
    MUDMANConfig,
    NPOConfig,
    RMUConfig,
    SimNPOConfig,
    TARConfig,
    UnlearnTrainer,
)
from hf_unlearn.environment import environment

GOLDEN = Path(__file__).with_name("golden_weights.json")
DTYPE = torch.float64  # kernel-order rounding ~1e-16: see the module's docstring
TOLERANCE = 1e-7  # largest allowed fingerprint difference
KERNEL_PERTURBATION = 1e-14  # relative change of the start that stands for another CPU's kernels
ADAMW = {"learning_rate": 1e-3}
CIR_TINY = dict(loss_layers=[0, 1], retain_layer=2, act_components=2, grad_components=2, pca_niter=4, step_norm=0.5, projection="sequential",
                disruption_budget=None, eval_strategy="no", eval_on_start=False, per_device_train_batch_size=8,
                retain_batch_size=None)  # fmt: skip
CONFIGS = {
    "mudman": (MUDMANConfig, dict(fork_every_n_loops=2, adv_decay=0.8, unlearning_rate=0.02)),
    "mudman_neg_entropy": (MUDMANConfig, dict(fork_every_n_loops=2, unlearning_loss="neg_entropy", unlearning_rate=0.02)),
    "mudman_correct_logit": (MUDMANConfig, dict(unlearning_loss="correct_logit_minus_avg", unlearning_rate=0.02)),
    "mudman_no_masking": (MUDMANConfig, dict(disruption_masking=False, unlearning_rate=0.02)),
    "mudman_no_normalization": (MUDMANConfig, dict(normalize_unlearning_grad=False, unlearning_rate=0.5)),
    "mudman_no_meta_learning": (MUDMANConfig, dict(meta_learning=False, unlearning_rate=0.02)),
    "mudman_no_momentum": (MUDMANConfig, dict(retain_momentum=0.0, unlearning_rate=0.02)),
    "mudman_wagle": (MUDMANConfig, dict(wagle_fraction=0.2, unlearning_rate=0.02)),
    "mudman_representation": (MUDMANConfig, dict(retain_representation_weight=0.1, unlearning_rate=0.02)),
    "tar": (TARConfig, dict(unlearning_rate=1e-3, retain_representation_weight=1e-2)),  # the settings the golden weights were written with
    "graddiff": (GradDiffConfig, ADAMW),
    "graddiff_accumulation": (GradDiffConfig, dict(ADAMW, gradient_accumulation_steps=2, per_device_train_batch_size=2)),
    "graddiff_masking": (GradDiffConfig, dict(ADAMW, disruption_masking=True, retain_momentum=0.9)),
    "graddiff_normalized": (GradDiffConfig, dict(ADAMW, normalize_unlearning_grad=True)),
    "graddiff_wagle": (GradDiffConfig, dict(ADAMW, wagle_fraction=0.2)),
    "npo": (NPOConfig, ADAMW),
    "npo_meta_learning": (NPOConfig, dict(ADAMW, meta_learning=True, fork_every_n_loops=2)),
    "npo_mudman_components": (NPOConfig, dict(ADAMW, meta_learning=True, disruption_masking=True, normalize_unlearning_grad=True,
                                              retain_momentum=0.9, unlearning_rate=0.01)),  # fmt: skip
    "simnpo": (SimNPOConfig, ADAMW),
    "rmu": (RMUConfig, dict(ADAMW, rmu_layer=1, retaining_rate=10.0)),
    "circuit_breakers": (CircuitBreakersConfig, dict(ADAMW, cb_layers=[1, 2])),  # as a LoRA adapter: see PEFT below
    "cir": (CIRConfig, CIR_TINY),
    "cir_orthogonal": (CIRConfig, {**CIR_TINY, "projection": "orthogonal"}),
    "cir_neg_cross_entropy": (CIRConfig, dict(CIR_TINY, cir_loss="neg_cross_entropy")),
}
STEPS = {"cir": 6, "cir_orthogonal": 6, "cir_neg_cross_entropy": 6}  # epoch 0 collects, epoch 1 updates
# Adapters that start away from the reference (random B), so that the first update is a real gradient.
PEFT = {"circuit_breakers": dict(r=4, target_modules=["gate_proj", "up_proj", "down_proj"], init_lora_weights=False)}


def fingerprints(tensors: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    out = {}
    for name, tensor in tensors.items():
        flat = tensor.detach().double().reshape(-1)
        directions = torch.randn(8, flat.numel(), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        out[name] = (directions @ flat).tolist() + [flat.sum().item()]
    return out


def machine_independent_start(model: torch.nn.Module) -> None:
    """Every matrix drawn again, uniformly (std 0.02, the Llama initializer's), in float64. torch's normal sampler
    draws other values on CPUs with other vector units (AVX-512, AVX2 or none: a relative 1e-9 in the weights' sum),
    and adapters (PEFT) are drawn with a uniform one: a uniform draw is the integer bits scaled, the same everywhere."""
    generator = torch.Generator().manual_seed(0)
    bound = 0.02 * 3**0.5
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.uniform_(-bound, bound, generator=generator)


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def run(name: str, output_dir, initial_noise: float = 0.0) -> dict[str, list[float]]:
    """Train configuration ``name`` on the tiny model (its weights scaled by 1 + ``initial_noise`` x seeded noise).
    Everything is created in float64, adapters included: drawn in float32 and cast, their start would differ by CPU."""
    with default_dtype(DTYPE):
        return _run(name, output_dir, initial_noise)


def _run(name: str, output_dir, initial_noise: float) -> dict[str, list[float]]:
    tokenizer = char_tokenizer()
    model = tiny_llama(len(tokenizer))
    machine_independent_start(model)
    if initial_noise:
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.mul_(1 + initial_noise * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    config_class, settings = CONFIGS[name]
    args = unlearn_config(output_dir, config_class=config_class, **{"max_steps": STEPS.get(name, 4), **settings})
    torch.manual_seed(0)  # the adapter's initial weights
    trainer = UnlearnTrainer(
        model, args, forget_dataset=Dataset.from_dict({"text": FORGET_TEXTS}),
        retain_dataset=Dataset.from_dict({"text": RETAIN_TEXTS}), processing_class=tokenizer,
        peft_config=LoraConfig(**PEFT[name]) if name in PEFT else None,
    )  # fmt: skip
    trainer.train()
    return fingerprints(trainer.target_parameters())


def largest_difference(got: dict[str, list[float]], expected: dict[str, list[float]]) -> tuple[float, str]:
    assert got.keys() == expected.keys()
    return max((max(abs(a - b) for a, b in zip(values, expected[param])), param) for param, values in got.items())


@pytest.mark.parametrize("name", list(CONFIGS))
def test_weights_match_the_golden_file(name, tmp_path):
    golden = json.loads(GOLDEN.read_text())
    difference, param = largest_difference(run(name, tmp_path), golden["weights"][name])
    written_with = {k: v for k, v in golden["environment"]["packages"].items() if environment(devices=False)["packages"].get(k) != v}
    assert difference <= TOLERANCE, (
        f"{name} {param}: fingerprints differ by {difference} (golden file written on {golden['environment']['cpu_model']}"
        f"{f' with {written_with}' if written_with else ''})"
    )


@pytest.mark.parametrize("name", list(CONFIGS))
def test_configurations_are_well_conditioned(name, tmp_path):
    """A change of the start at the level other kernels make moves the result by far less than the golden tolerance.
    Full-weight Circuit Breakers from the exact reference failed this (its first AdamW step is rounding noise), and so
    did MUDMAN with its fp32 state in a float64 run (a mask sign flipped: 2e-6)."""
    difference, param = largest_difference(run(name, tmp_path / "a"), run(name, tmp_path / "b", initial_noise=KERNEL_PERTURBATION))
    assert difference <= TOLERANCE / 10, f"{name} {param}: a {KERNEL_PERTURBATION} change of the initial weights moved the fingerprints by {difference}"



@pytest.mark.parametrize("capability", ["default", "avx2"])
def test_weights_match_with_other_cpu_kernels(capability):
    """Another CPU, emulated on this one: torch's kernels for another vector unit (``ATEN_CPU_CAPABILITY``: none, or
    AVX2 where this machine has AVX-512) and one thread, in a fresh process. In float32 with normal-drawn weights this
    moved every configuration past the tolerance, as an Intel Xeon did against the AMD EPYC-written file."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", "weights_match_the_golden"],
        env={**os.environ, "ATEN_CPU_CAPABILITY": capability, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, cwd=Path(__file__).parent,
    )  # fmt: skip
    assert done.returncode == 0 and f"{len(CONFIGS)} passed" in done.stdout, done.stdout[-3000:]

if __name__ == "__main__":
    import tempfile

    torch.set_num_threads(1)
    check = "--check" in sys.argv  # print each configuration's largest difference against the file, write nothing
    names = [a for a in sys.argv[1:] if a != "--check"] or list(CONFIGS)
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {"weights": {}}
    with tempfile.TemporaryDirectory() as tmp:
        results = {name: run(name, Path(tmp) / name) for name in names}
    if check:
        differences = {name: largest_difference(results[name], golden["weights"][name])[0] for name in names}
        print("\n".join(f"{name}: {difference:.2g}" for name, difference in differences.items()))
        print(f"largest: {max(differences.values()):.2g} ({torch.backends.cpu.get_cpu_capability()} kernels; tolerance {TOLERANCE})")
        sys.exit(0)
    golden["weights"].update(results)
    golden["environment"] = environment()
    GOLDEN.write_text(json.dumps(golden, indent=1))
    print(f"wrote {', '.join(names)} to {GOLDEN}", file=sys.stderr)
