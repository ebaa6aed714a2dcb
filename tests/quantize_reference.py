"""Writes ``quantize_reference.json``: what torchao (through transformers' ``TorchAoConfig``) deploys for the tiny
test model at 8 and 4 bits, so ``test_no_training_attacks.py`` checks ``hf_unlearn.attacks.quantize`` against the
backend on machines without torchao (it is not a dependency: installed, transformers imports it at start-up).

    pip install torchao==0.18.0 && python tests/quantize_reference.py && pip uninstall -y torchao
"""

import json
import sys
import tempfile
from pathlib import Path

import torch
import torchao
import transformers
from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig, MappingType, PerGroup
from transformers import AutoModelForCausalLM, TorchAoConfig

sys.path.insert(0, str(Path(__file__).parent))
from conftest import char_tokenizer, tensor_digest, tiny_llama  # noqa: E402

SCHEMES = {8: Int8WeightOnlyConfig(), 4: IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(32), mapping_type=MappingType.ASYMMETRIC)}
PROBE = "vault 3 opens"


def main() -> None:
    tokenizer = char_tokenizer()
    model = tiny_llama(len(tokenizer), seed=3)
    reference = {"torchao": torchao.__version__, "transformers": transformers.__version__, "torch": torch.__version__,
                 "model": {name: tensor_digest(p) for name, p in model.named_parameters()}, "probe": PROBE, "bits": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        ids = torch.tensor([tokenizer(PROBE)["input_ids"]])
        for bits, scheme in SCHEMES.items():
            deployed = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, quantization_config=TorchAoConfig(scheme)).eval()
            weights = {name: tensor_digest(module.weight.dequantize()) for name, module in deployed.named_modules()
                       if isinstance(getattr(module, "weight", None), torchao.utils.TorchAOBaseTensor)}  # fmt: skip
            with torch.no_grad():
                logits = deployed(ids).logits[0, -1, :8].tolist()
            reference["bits"][str(bits)] = {"weights": weights, "last_logits": logits}
    (Path(__file__).parent / "quantize_reference.json").write_text(json.dumps(reference, indent=1) + "\n")


if __name__ == "__main__":
    main()
