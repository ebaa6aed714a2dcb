"""Run by test_quality_benchmark.py: the quality benchmark dies (as a kill would) in its Nth attack.

    python tests/quality_kill.py N BENCHMARK_ARGUMENTS...
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import quality  # noqa: E402

from hf_unlearn.attacks.relearn_trainer import RelearnAttackTrainer  # noqa: E402

train = RelearnAttackTrainer.train
attacks_started = 0


def dying_train(self, *args, **kwargs):
    global attacks_started
    attacks_started += 1
    if attacks_started == int(sys.argv[1]):
        os._exit(3)
    return train(self, *args, **kwargs)


if __name__ == "__main__":
    RelearnAttackTrainer.train = dying_train
    quality.main(sys.argv[2:])
