"""The ``hf-unlearn`` commands, one module each (``hf_unlearn.cli`` dispatches to them), as TRL's scripts: a
``make_parser`` and a ``main(argv)``, with a ``run_*`` function taking the parsed arguments, which tests and
``recipes/*.py`` call too. Every command takes YAML configs (``--config``) and command-line flags and runs under
``accelerate launch``; what they share is in ``common``.
"""

from . import attack, distill, evaluate, sweep, unlearn

__all__ = ["attack", "distill", "evaluate", "sweep", "unlearn"]
