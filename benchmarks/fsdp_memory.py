"""Benchmark: per-process memory of the weights and MUDMAN's state under FSDP2 against DDP (docs/design.md §8.1).

Two gloo CPU processes unlearn the embedded SmolLM2-135M with MUDMAN (adversary and retain EMA on, every
linear layer trained) for two steps, once under DDP and once under FSDP2. Each process counts the bytes of
the tensors it holds after the last step: its parameters (its shards under FSDP2), their gradients and the
method state (adversary, retain EMA); and its peak resident memory (the whole process: Python, libraries,
activations, and the layers FSDP gathers one at a time).

accelerate shards on GPUs only, so the FSDP2 run engages it on the CPU processes with the tests' shim
(tests/distributed_fsdp.py), which is not part of the package.

    python benchmarks/fsdp_memory.py            # writes benchmarks/results/fsdp_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
LAYOUTS = ("ddp", "fsdp2")


def held_bytes(tensors) -> int:
    """Bytes of the tensors this process holds: a DTensor's own shard, not the whole tensor."""
    from torch.distributed.tensor import DTensor

    return sum((t.to_local() if isinstance(t, DTensor) else t).nbytes for t in tensors if isinstance(t, torch.Tensor))


def worker(layout: str, out: str) -> None:
    """One process of a 2-process run: unlearn, then write this process's figures to ``out``.rank."""
    sys.path.insert(0, str(ROOT / "tests"))
    if layout == "fsdp2":
        from distributed_fsdp import FSDP_ENVIRONMENT, engage_fsdp_on_cpu

        os.environ.update(FSDP_ENVIRONMENT)  # SmolLM2 is a Llama: LlamaDecoderLayer is its FSDP unit
        engage_fsdp_on_cpu()
    from datasets import Dataset

    from hf_unlearn import MUDMANConfig, UnlearnTrainer
    from hf_unlearn.forward import is_sharded
    from hf_unlearn.models import default_model_path

    texts = [f"def function_{i}(x):\n    return x * {i} + sum(range({i}))\n" for i in range(8)]
    prose = [f"The river bends {i} times before it reaches the sea, and the town grows along it." for i in range(8)]
    with tempfile.TemporaryDirectory() as tmp:
        args = MUDMANConfig(
            output_dir=tmp, per_device_train_batch_size=2, max_steps=2, max_length=32, retain_momentum=0.9,
            save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True, seed=0,
        )  # fmt: skip
        trainer = UnlearnTrainer(
            str(default_model_path()), args, forget_dataset=Dataset.from_dict({"text": texts}),
            retain_dataset=Dataset.from_dict({"text": prose}),
        )  # fmt: skip
        trainer.train()
    state = trainer.procedure.state_dict()
    targets = list(trainer.target_parameters().values())
    figures = {
        "sharded": is_sharded(trainer.model),
        "weights_bytes": held_bytes(trainer.model.parameters()),
        "target_weights_bytes": held_bytes(targets),
        "gradient_bytes": held_bytes(p.grad for p in targets),
        "method_state_bytes": held_bytes([*(state["adversary"] or []), *(state["retain_ema"] or [])]),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    Path(f"{out}.{args.process_index}").write_text(json.dumps(figures))


def run(layout: str, tmp: Path) -> list[dict]:
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = tmp / layout
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__, "--worker", layout, "--out", str(out)]
    subprocess.run(command, env=env, check=True)
    return [json.loads(Path(f"{out}.{rank}").read_text()) for rank in range(2)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "fsdp_memory.json"))
    parser.add_argument("--worker", choices=LAYOUTS, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.out)
    from hf_unlearn.environment import environment

    with tempfile.TemporaryDirectory() as tmp:
        results = {layout: run(layout, Path(tmp)) for layout in LAYOUTS}
    if not all(process["sharded"] for process in results["fsdp2"]):
        raise RuntimeError("FSDP2 was not engaged: the figures would compare DDP with itself")
    report = {
        "command": "python benchmarks/fsdp_memory.py",
        "setting": "MUDMAN (adversary, retain EMA 0.9), all linear layers, SmolLM2-135M fp32, 2 gloo CPU processes, batch 2 x 32 tokens, 2 steps",
        "environment": environment(),
        "per_process": results,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    for layout, processes in results.items():
        mib = {key: [round(p[key] / 2**20, 1) for p in processes] for key in processes[0] if key.endswith("bytes")}
        print(layout, mib)


if __name__ == "__main__":
    main()
