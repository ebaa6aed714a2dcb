"""The attack suites by name: ``quick``, ``standard`` and ``paper`` (``AttackSuite.preset``)."""

from __future__ import annotations

from typing import Any

from ..unlearn_config import invalid_setting

# Attack settings of each preset; docs/results.md ("How the presets were chosen") has the measurements that chose them,
# made with `benchmarks/attack_calibration.py` on MUDMAN-unlearned SmolLM2 (facts): plain and clipped
# SGD recovered nothing there, AdamW with clipping recovered up to lr 1e-4 and broke the model (retain
# loss > 1.5x) from 3e-4 on within 20 steps, LoRA at lr 1e-3 recovered most (0.48 of split B) and
# broke it at 3e-3. Every attack evaluates every 10 steps.
SGD, ADAMW_CLIPPED = {"optim": "sgd"}, {"optim": "adamw_torch", "max_grad_norm": 1.0}
LORA_ADAMW = {**ADAMW_CLIPPED, "use_peft": True, "lora_r": 16, "lora_alpha": 32}
# Attacks that train nothing (``hf_unlearn.attacks.quantize`` and ``.inputs``): one evaluation per variant.
QUANTIZE_INT4 = {"kind": "quantize", "quantize_bits": 4}
NO_TRAINING = {
    "quantize_int8": {"kind": "quantize", "quantize_bits": 8},
    "quantize_int4": QUANTIZE_INT4,
    "in_context": {"kind": "in_context"},
    "prompt": {"kind": "prompt"},
}
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # For tests, sweeps and the CPU demo: the two attacks that recovered most in calibration, and 4-bit weights.
    "quick": {
        "lora_1e-3": {**LORA_ADAMW, "learning_rate": 1e-3, "max_steps": 30},
        "adamw_1e-4": {**ADAMW_CLIPPED, "learning_rate": 1e-4, "max_steps": 30},
        "quantize_int4": QUANTIZE_INT4,
    },
    # What a robustness claim should rest on.
    "standard": {
        "sgd_3e-3_noclip": {**SGD, "learning_rate": 3e-3, "max_steps": 60},  # the MUDMAN paper's SmolLM attack
        "sgd_3e-2_clip": {**SGD, "learning_rate": 3e-2, "max_grad_norm": 1.0, "max_steps": 60},
        "sgd_1e-1_clip": {**SGD, "learning_rate": 1e-1, "max_grad_norm": 1.0, "max_steps": 60},
        "adamw_3e-5": {**ADAMW_CLIPPED, "learning_rate": 3e-5, "max_steps": 60},
        "adamw_1e-4": {**ADAMW_CLIPPED, "learning_rate": 1e-4, "max_steps": 60},
        "adamw_3e-4": {**ADAMW_CLIPPED, "learning_rate": 3e-4, "max_steps": 60},
        "lora_1e-3": {**LORA_ADAMW, "learning_rate": 1e-3, "max_steps": 60},
        "retain_interleaved_adamw_1e-4": {**ADAMW_CLIPPED, "learning_rate": 1e-4, "interleave_retain": True, "max_steps": 60},
        **NO_TRAINING,
    },
    # The papers' own attacks, exactly (MUDMAN, arXiv 2506.12484; authors' code filyp/MUDMAN): plain
    # SGD on every weight, no clipping, batch 16 of 100-token chunks.
    "paper": {
        "mudman_smollm_sgd": {**SGD, "learning_rate": 3e-3, "max_steps": 150, "per_device_train_batch_size": 16},
        "mudman_llama_sgd": {**SGD, "learning_rate": 1e-3, "max_steps": 60, "per_device_train_batch_size": 16},
        "mudman_wmdp_retain_interleaved": {
            **SGD, "learning_rate": 3e-4, "max_steps": 900, "interleave_retain": True, "per_device_train_batch_size": 16,
        },  # fmt: skip
        # CIR's authors (filyp/unlearning, configs/main_comparison_llama_bio.yaml): SGD at 1e-5 for 100 epochs
        # over the attack split, batch 32. (Their runner retrains only the layers up to the last CIR layer;
        # here every weight is attacked, a stronger attack.)
        "cir_sgd": {**SGD, "learning_rate": 1e-5, "num_train_epochs": 100, "per_device_train_batch_size": 32},
        **NO_TRAINING,
    },
}


def check_preset_choice(attack_suite: str, attack_steps: int | None = None, others: tuple[str, ...] = ()) -> None:
    """A command's ``--attack_suite`` (a preset, or one of ``others``) and ``--attack_steps``, when its flags are parsed:
    an unknown preset was refused only after the models and data loaded, and ``attack_steps`` below 1 became every
    attack's ``max_steps``, which the Trainer reads as "train num_train_epochs" (-1) or refuses as such (0)."""
    if attack_suite not in (*PRESETS, *others):
        raise invalid_setting("attack_suite", attack_suite, f"use one of {', '.join((*PRESETS, *others))}")
    if attack_steps is not None and attack_steps < 1:
        raise invalid_setting("attack_steps", attack_steps, "give steps >= 1, or leave it unset for the preset's steps")
