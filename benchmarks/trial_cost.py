"""Benchmark: what bf16 autocast costs in precision and saves in time, on the quality benchmark's batches.

The quality benchmark's trials run under bf16 autocast (fp32 weights; ``SweepArguments.bf16``). This
measures, on the embedded SmolLM2-135M and the code scenario's forget batches at the default scale
(4 x 64 tokens), with the MUDMAN target weights (``gate_proj``):

- the loss and the gradient of the trained weights under autocast against fp32 on the same batches
  (absolute loss difference; relative L2 error and cosine of the gradient);
- the time of one forward+backward pass in each (median over the batches, after a warm-up);
- the error of a *disruption* (a loss change between two models, as the budget measures it) under
  autocast: the weights moved by MUDMAN's published step (RMS 2e-5) along the first batch's gradient,
  the mean loss over the batches before and after, in both precisions.

    python benchmarks/trial_cost.py [--batches 8] [--threads 2] [--output_dir outputs/benchmarks/trial_cost]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_unlearn.data import LMCollator
from hf_unlearn.environment import environment
from hf_unlearn.forward import lm_loss
from hf_unlearn.models import default_model_path
from hf_unlearn.scenarios import code_scenario

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import SCALES, data_arguments  # noqa: E402


def loss_and_gradient(model: torch.nn.Module, batch: dict, bf16: bool) -> tuple[float, torch.Tensor, float]:
    model.zero_grad(set_to_none=True)
    started = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = lm_loss(model, batch)[0]
    loss.backward()
    seconds = time.perf_counter() - started
    gradient = torch.cat([p.grad.reshape(-1) for n, p in model.named_parameters() if "gate_proj" in n])
    return loss.item(), gradient, seconds


@torch.no_grad()
def mean_losses(model: torch.nn.Module, batches: list[dict]) -> dict[str, float]:
    losses = {}
    for bf16 in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            losses["bf16" if bf16 else "fp32"] = statistics.fmean(lm_loss(model, batch)[0].item() for batch in batches)
    return losses


def disruption_error(model: torch.nn.Module, batches: list[dict]) -> dict[str, float]:
    """A loss change between two models as fp32 and autocast measure it (the weights moved by an RMS of 2e-5)."""
    _, gradient, _ = loss_and_gradient(model, batches[0], bf16=False)
    gate = [p for n, p in model.named_parameters() if "gate_proj" in n]
    before = mean_losses(model, batches[1:])
    step = 2e-5 * gradient.numel() ** 0.5 / gradient.norm()
    with torch.no_grad():
        offset = 0
        for parameter in gate:
            parameter.add_(step * gradient[offset : offset + parameter.numel()].view_as(parameter))  # ascent: the loss rises
            offset += parameter.numel()
    after = mean_losses(model, batches[1:])
    change = {precision: after[precision] - before[precision] for precision in before}
    return {"disruption_fp32": change["fp32"], "disruption_bf16": change["bf16"], "disruption_error": abs(change["bf16"] - change["fp32"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output_dir", default="outputs/benchmarks/trial_cost")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    scale = SCALES["default"]
    path = default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_("gate_proj" in name)
    forget = code_scenario(data_arguments(scale, "tuning", 42), tokenizer).unlearn
    collate = LMCollator(tokenizer.pad_token_id)
    size = scale["batch_size"]
    batches = [collate([forget[i] for i in range(k * size, (k + 1) * size)]) for k in range(args.batches + 1)]
    rows = []
    for k, batch in enumerate(batches):
        loss32, grad32, seconds32 = loss_and_gradient(model, batch, bf16=False)
        loss16, grad16, seconds16 = loss_and_gradient(model, batch, bf16=True)
        if k == 0:
            continue  # warm-up
        rows.append({
            "loss_fp32": loss32, "loss_difference": abs(loss16 - loss32),
            "gradient_relative_error": float((grad16 - grad32).norm() / grad32.norm()),
            "gradient_cosine": float(torch.nn.functional.cosine_similarity(grad16.double(), grad32.double(), dim=0)),
            "seconds_fp32": seconds32, "seconds_bf16": seconds16,
        })  # fmt: skip
    summary = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
    summary["max_loss_difference"] = max(row["loss_difference"] for row in rows)
    summary["min_gradient_cosine"] = min(row["gradient_cosine"] for row in rows)
    summary["speedup"] = summary["seconds_fp32"] / summary["seconds_bf16"]
    summary.update(disruption_error(model, batches))
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    result = {"environment": environment(), "setting": {"batches": args.batches, "batch_size": size, "tokens": scale["tokens"]},
              "summary": summary, "batches": rows}  # fmt: skip
    (output_dir / "trial_cost.json").write_text(json.dumps(result, indent=2))
    print("| measure (median over batches) | value |\n|---|---|")
    for key, value in summary.items():
        print(f"| {key} | {value:.4g} |")


if __name__ == "__main__":
    main()
