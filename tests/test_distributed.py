"""Two CPU processes (gloo) give the same MUDMAN result as one process with the same global batch."""

import os
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def run(out, nproc):
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1"}
    script = [str(HERE / "distributed_mudman.py"), str(out), "8"]
    if nproc == 1:
        command = [sys.executable, *script]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), *script]
    subprocess.run(command, env=env, check=True, timeout=600, capture_output=True)
    return torch.load(out)


def test_two_processes_match_one(tmp_path):
    single = run(tmp_path / "single.pt", 1)
    double = run(tmp_path / "double.pt", 2)
    assert (single.pop("world_size"), double.pop("world_size")) == (1, 2)
    single, double = single["weights"], double["weights"]
    assert single.keys() == double.keys()
    for name in single:
        assert torch.allclose(single[name], double[name], atol=1e-5), f"{name}: {(single[name] - double[name]).abs().max()}"
