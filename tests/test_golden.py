"""Every method and switch combination ends where it ended when the golden file was made.

``tests/golden_weights.json`` was written by the code before the update pipeline was split into
parts (objectives, transforms, procedures): a refactor must leave each method's trained weights
unchanged. To keep the file small, each trained tensor is stored as its projections on 8 seeded
random directions and its sum; a change of 1e-6 in the weights shows in them.

    python tests/test_golden.py   # rewrite the golden file (only when a change is *meant* to alter results)
"""

import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import FORGET_TEXTS, RETAIN_TEXTS, char_tokenizer, tiny_llama, unlearn_config
from datasets import Dataset

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

GOLDEN = Path(__file__).with_name("golden_weights.json")
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
    "tar": (TARConfig, {}),
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
    "circuit_breakers": (CircuitBreakersConfig, dict(ADAMW, cb_layers=[1, 2])),
    "cir": (CIRConfig, CIR_TINY),
    "cir_orthogonal": (CIRConfig, {**CIR_TINY, "projection": "orthogonal"}),
    "cir_neg_cross_entropy": (CIRConfig, dict(CIR_TINY, cir_loss="neg_cross_entropy")),
}
STEPS = {"cir": 6, "cir_orthogonal": 6, "cir_neg_cross_entropy": 6}  # epoch 0 collects, epoch 1 updates


def fingerprints(tensors: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    out = {}
    for name, tensor in tensors.items():
        flat = tensor.detach().double().reshape(-1)
        directions = torch.randn(8, flat.numel(), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        out[name] = (directions @ flat).tolist() + [flat.sum().item()]
    return out


def run(name: str, output_dir) -> dict[str, list[float]]:
    tokenizer = char_tokenizer()
    model = tiny_llama(len(tokenizer))
    config_class, settings = CONFIGS[name]
    args = unlearn_config(output_dir, config_class=config_class, **{"max_steps": STEPS.get(name, 4), **settings})
    trainer = UnlearnTrainer(
        model, args, forget_dataset=Dataset.from_dict({"text": FORGET_TEXTS}),
        retain_dataset=Dataset.from_dict({"text": RETAIN_TEXTS}), processing_class=tokenizer,
    )  # fmt: skip
    trainer.train()
    return fingerprints(trainer.target_parameters())


@pytest.mark.parametrize("name", list(CONFIGS))
def test_weights_match_the_golden_file(name, tmp_path):
    golden = json.loads(GOLDEN.read_text())[name]
    got = run(name, tmp_path)
    assert got.keys() == golden.keys()
    for param, values in got.items():
        difference = max(abs(a - b) for a, b in zip(values, golden[param]))
        assert difference <= 1e-5, f"{name} {param}: fingerprints differ by {difference}"


if __name__ == "__main__":
    import tempfile

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        result = {name: run(name, Path(tmp) / name) for name in CONFIGS}
    GOLDEN.write_text(json.dumps(result, indent=1))
    print(f"wrote {GOLDEN} ({len(result)} configurations)", file=sys.stderr)
