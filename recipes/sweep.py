"""Tune a method for robustness: an Optuna search under a disruption budget and a pass budget.

    python recipes/sweep.py --method mudman --n_trials 20
    python recipes/sweep.py --method npo --n_trials 30 --storage postgresql://host/db   # many machines, one study
    accelerate launch recipes/sweep.py --method cir --scenario facts --disruption_unit relative --disruption_budget 0.001

The same as ``hf-unlearn sweep``; the procedure is explained in ``hf_unlearn/sweep.py``. Rerun the
same command to resume the study. Sweeps tune on half the forget documents (``forget_pool=tuning``);
report the best settings (``<output_dir>/best.yaml``) on the other half (``--forget_pool test``).
"""

import sys

from hf_unlearn.cli import run_command

if __name__ == "__main__":
    run_command("sweep", sys.argv[1:])
