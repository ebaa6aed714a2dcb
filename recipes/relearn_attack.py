"""Relearning attacks on an unlearned model: an attack suite fine-tunes on the forget data's attack split.

    python recipes/relearn_attack.py --config relearn_attack_smollm2_code \
        --model_name_or_path outputs/mudman_smollm2_code [--attack_suite standard] [--baseline_model embedded]

The same as ``hf-unlearn attack`` (``hf_unlearn.cli``). Use the same data section as the unlearning
run: the splits are rebuilt deterministically, so the attacks train on documents the unlearning
never saw and are measured on documents nobody trained on. ``--attack_suite`` picks a preset
(``quick``, ``standard``, ``paper``; see ``hf_unlearn.attacks``): every attack runs on a fresh copy
of the model, and the result is the attacker's best over all of them. Settings given in the YAML
or on the command line that differ from ``RelearnAttackConfig``'s defaults apply to every attack of
the suite (``--max_steps 30`` shortens them all); ``--attack_suite none`` runs the single attack
they describe. Writes every curve and the attacker's best point to
``<output_dir>/attack_suite.json``; with ``--baseline_model`` (a model path, or ``embedded``) the
same suite attacks that model too and a RobustnessReport is written beside it.
"""

import sys

from hf_unlearn.cli import run_command

if __name__ == "__main__":
    run_command("attack", sys.argv[1:])
