"""Two CPU processes (gloo) give the same results as one process (docs/design.md §8)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent


def launch(script, nproc, *args, expect_failure=False) -> None:
    pythonpath = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1"}
    command = [str(HERE / script), *map(str, args)]
    if nproc == 1:
        command = [sys.executable, *command]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *command]
    for _ in range(3):
        process = subprocess.run(command, env=env, timeout=600, capture_output=True, text=True)
        # torchrun picks a free port and binds it later; another process can take it in between, as
        # PyTorch's own tests know (retry_on_connect_failures). Only that failure is retried.
        if "Address already in use" not in process.stderr:
            break
    assert (process.returncode != 0) == expect_failure, f"{' '.join(command)} exited {process.returncode}:\n{process.stderr[-4000:]}"


def load(out, nproc):
    result = torch.load(out)
    assert result.pop("world_size") == nproc
    return result


def run(script, out, nproc, *args, expect_failure=False):
    launch(script, nproc, out, *args, expect_failure=expect_failure)
    return None if expect_failure else load(out, nproc)


def run_each(script, folder, nproc, global_batch, methods) -> dict:
    """Each of ``methods`` in turn, in one launch (starting one costs more than a tiny model's run): {method: result}."""
    folder.mkdir()
    launch(script, nproc, folder, global_batch, ",".join(methods))
    return {method: load(folder / f"{method}.pt", nproc) for method in methods}


@pytest.mark.parametrize("method", ["mudman", "cir"])
def test_unlearning_two_processes_match_one(tmp_path, method):
    """Same global batch of 8: one process with 8 examples per step, or two with 4 each."""
    single = run("distributed_unlearn.py", tmp_path / "single.pt", 1, 8, method)
    double = run("distributed_unlearn.py", tmp_path / "double.pt", 2, 8, method)
    assert single["weights"].keys() == double["weights"].keys()
    for name, weight in single["weights"].items():
        assert not torch.allclose(weight, single["initial"][name], atol=1e-4), f"{name} did not move: nothing was compared"
        assert torch.allclose(weight, double["weights"][name], atol=1e-5), f"{name}: {(weight - double['weights'][name]).abs().max()}"


@pytest.mark.parametrize("method", ["mudman", "cir"])
def test_killed_during_a_checkpoint_save_resumes_to_the_uninterrupted_weights(tmp_path, method):
    """Two processes die while writing a checkpoint; resume_from_checkpoint=True skips the broken one,
    resumes from the one before (CIR: each process restores its own statistics) and ends where an
    uninterrupted run does."""
    straight = run("distributed_unlearn.py", tmp_path / "straight.pt", 2, 8, method)["weights"]
    output_dir = tmp_path / "run"
    run("distributed_unlearn.py", tmp_path / "killed.pt", 2, 8, method, "killed", output_dir, expect_failure=True)
    kill_step = {"mudman": 3, "cir": 5}[method]
    assert (output_dir / f"checkpoint-{kill_step}").is_dir(), "the kill left a partial checkpoint behind"
    resumed = run("distributed_unlearn.py", tmp_path / "resumed.pt", 2, 8, method, "resume", output_dir)["weights"]
    for name, weight in straight.items():
        assert torch.equal(weight, resumed[name]), f"{name}: {(weight - resumed[name]).abs().max()}"


def test_undo_two_processes_match_one(tmp_path):
    """UNDO's distillation on a global batch of 8 texts of different lengths: one process, or two with 4 each (each
    process's token mean, averaged by DDP, weighted short texts more than the global token mean does)."""
    single = run("distributed_undo.py", tmp_path / "single.pt", 1, 8)
    double = run("distributed_undo.py", tmp_path / "double.pt", 2, 8)
    for name, weight in single["weights"].items():
        assert not torch.allclose(weight, single["initial"][name], atol=1e-4), f"{name} did not move: nothing was compared"
        assert torch.allclose(weight, double["weights"][name], atol=1e-5), f"{name}: {(weight - double['weights'][name]).abs().max()}"


def test_the_trainer_state_is_written_after_every_process_state(tmp_path):
    """The trainer state marks a checkpoint complete: with rank 1 slow to write its method state, rank 0 must
    still write the trainer state after it (exit 9 otherwise)."""
    run("distributed_unlearn.py", tmp_path / "slow.pt", 2, 8, "mudman", "slow_rank1", tmp_path / "run")


def test_evaluators_two_processes_match_one(tmp_path):
    single = run("distributed_eval.py", tmp_path / "single.pt", 1)
    double = run("distributed_eval.py", tmp_path / "double.pt", 2)
    assert single["letter_logits"].shape == double["letter_logits"].shape == (7, 4)
    assert torch.allclose(single["letter_logits"], double["letter_logits"], atol=1e-5)
    # The trainers' evaluation losses: the token mean of the whole split, with 1 or 2 processes (batch means differed).
    assert single["losses"].keys() == double["losses"].keys() == single["direct"].keys()
    for key, value in single["direct"].items():
        assert single["losses"][key] == pytest.approx(value, abs=1e-6) and double["losses"][key] == pytest.approx(value, abs=1e-6), key
    for name in ("mcq", "facts"):
        assert single[name].keys() == double[name].keys()
        for key in single[name]:
            assert double[name][key] == pytest.approx(single[name][key], abs=1e-6), (name, key)
