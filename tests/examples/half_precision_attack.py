"""A new attack kind, start to finish (docs/design.md §6.1): the model as deployed in bfloat16, no training."""

import copy

import torch

from hf_unlearn.attacks import AttackRun, register_attack
from hf_unlearn.attacks.attack import evaluate_variants


@register_attack
class HalfPrecision:
    name = "half_precision"  # RelearnAttackConfig(kind="half_precision"); a preset line {"kind": "half_precision"}
    trains = False
    settings = ()  # it reads no RelearnAttackConfig field of its own

    def check(self, model, config) -> None:
        pass  # any model can be cast

    def describe(self, config) -> str:
        return "bfloat16 weights, no training"

    def run(self, model, config, *, attack_dataset, eval_dataset, evaluators, processing_class, retain_dataset, start, wandb) -> AttackRun:
        def variants():  # made when asked for: after the unattacked model is evaluated, one copy at a time
            yield "bf16", copy.deepcopy(model).to(torch.bfloat16), eval_dataset, evaluators

        return evaluate_variants(variants(), model, config, eval_dataset, evaluators, processing_class, start, wandb)
