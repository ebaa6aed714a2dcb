"""Benchmark: finished tuning trials per hour, two single-threaded workers on one Optuna study against one
process with two threads (the quality benchmark runs the first way).

Both layouts run the quality benchmark's own trials (default scale, code scenario, MUDMAN, bf16 trials): a
fresh SQLite study each time, every trial at MUDMAN's published settings (a search range a millionth wide), so
each trial costs the same and only the layout differs. ``--trials`` trials per layout in all (two workers take
half each). Run it on a quiet machine: nothing else may use the cores.

    python benchmarks/worker_throughput.py --trials 4
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent


def quality_module():
    spec = importlib.util.spec_from_file_location("quality", HERE / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def worker(storage: str, output_dir: str, n_trials: int, threads: int) -> None:
    """One process of a layout: trials of the shared study until it has ``n_trials`` finished."""
    import torch

    torch.set_num_threads(threads)
    quality = quality_module()
    from hf_unlearn.sweep import run_sweep

    scale, state = quality.SCALES["default"], quality.parse_args([])
    sweep_args = quality.sweep_arguments(state, scale, "mudman", "code")
    published = sweep_args.search_space["unlearning_rate"]["published"]
    sweep_args = replace(sweep_args, n_trials=n_trials, storage=storage, output_dir=output_dir,
                         search_space={"unlearning_rate": {"low": published, "high": published * (1 + 1e-6), "log": True}})  # fmt: skip
    run_sweep(sweep_args, quality.data_arguments(scale, "tuning", state.seed), state.model)


def layout(processes: int, threads: int, trials: int) -> dict:
    import optuna

    with tempfile.TemporaryDirectory() as folder:
        storage = f"sqlite:///{folder}/study.db"
        optuna.storages.RDBStorage(storage)  # the schema, before two workers race to create it
        command = [sys.executable, __file__, "--worker", storage, folder, str(trials), str(threads)]
        started = time.time()
        workers = [subprocess.Popen(command) for _ in range(processes)]
        if any(w.wait() != 0 for w in workers):
            raise RuntimeError(f"a worker of the {processes} x {threads}-thread layout failed")
        seconds = time.time() - started
        study = optuna.load_study(study_name="mudman-code", storage=storage)
        finished = sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    return {"processes": processes, "threads": threads, "finished_trials": finished, "seconds": seconds, "trials_per_hour": 3600 * finished / seconds}


def main(argv: list[str]) -> None:
    if argv[:1] == ["--worker"]:
        storage, output_dir, n_trials, threads = argv[1:]
        worker(storage, output_dir, int(n_trials), int(threads))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4, help="finished trials per layout (two workers share them)")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "worker_throughput.json")
    args = parser.parse_args(argv)
    from hf_unlearn.environment import environment

    rows = [layout(1, 2, args.trials), layout(2, 1, args.trials)]
    print("| layout | finished trials | wall time | trials per hour |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['processes']} process(es) x {row['threads']} thread(s) | {row['finished_trials']} | {row['seconds']:.0f} s | {row['trials_per_hour']:.1f} |")
    print(f"two single-threaded workers: {rows[1]['trials_per_hour'] / rows[0]['trials_per_hour']:.2f}x the trials per hour")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"environment": environment(), "trials": args.trials, "rows": rows}, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
