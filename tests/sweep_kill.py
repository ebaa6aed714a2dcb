"""Run by test_sweep.py: a sweep that dies (as a kill would) in the middle of its second trial.

    python tests/sweep_kill.py SWEEP_ARGUMENTS_JSON DATA_ARGUMENTS_JSON MODEL_DIR
"""

import json
import os
import sys

from hf_unlearn import sweep
from hf_unlearn.data import DataArguments

run_trial = sweep.run_trial


def dying_trial(trial, params, *args, **kwargs):
    if trial.number == 1:
        # A kill in the middle of a trial comes after its heartbeat thread has written once; dying
        # here at once could beat that thread, leaving a trial that never looks stale (flaky CI).
        trial.study._storage.record_heartbeat(trial._trial_id)
        os._exit(3)
    return run_trial(trial, params, *args, **kwargs)


if __name__ == "__main__":
    sweep.run_trial = dying_trial
    sweep_args, data_args = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    sweep.run_sweep(sweep.SweepArguments(**sweep_args), DataArguments(**data_args), sys.argv[3])
