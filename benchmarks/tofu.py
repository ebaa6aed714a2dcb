"""Benchmark: TOFU's metrics on the fictitious-facts scenario, for the target, the oracle and any unlearned model.

The fictitious facts (``hf_unlearn.data.fictitious``) written in TOFU's schema are scored by ``TOFUEvaluator``
(``hf_unlearn.scenarios.fictitious_tofu_evaluator``): forget quality against the oracle (SmolLM2 fine-tuned on the
retain facts only, ``benchmarks/oracle.py``), which plays TOFU's retain model, and model utility over the retain
facts and the US state and world capitals the target knows. Split-B accuracy at the attacker's best comes from an
attacked run (``hf-unlearn evaluate MODEL --scenario fictitious --benchmark tofu --retain_model ORACLE``), not here.

    nice -n 19 python benchmarks/tofu.py --threads 1                         # target and oracle
    python benchmarks/tofu.py --models npo=outputs/npo mudman=outputs/mudman    # and unlearned models

Writes ``tofu.json`` and ``tofu.md`` to ``--output_dir`` (``benchmarks/results/tofu``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from hf_unlearn.data.fictitious import oracle_models
from hf_unlearn.models import load_model
from hf_unlearn.scenarios import fictitious_tofu_evaluator

COLUMNS = ("forget_quality", "model_utility", "forget_truth_ratio", "forget_probability", "forget_rouge", "retain_probability", "retain_rouge")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="The fictitious facts' seed (benchmarks/oracle.py --seed).")
    parser.add_argument("--models", nargs="*", default=[], help="More rows: NAME=FOLDER of models unlearned from the target.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output_dir", default=str(Path(__file__).parent / "results" / "tofu"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    folders = {name: str(path) for name, path in oracle_models(args.seed).items()}
    folders.update(dict(entry.split("=", 1) for entry in args.models))
    _, target, tokenizer = load_model(folders["target"])
    evaluator = fictitious_tofu_evaluator(target, tokenizer, args.seed)
    _, oracle, _ = load_model(folders["oracle"])
    evaluator = dataclasses.replace(evaluator, reference=evaluator.reference_results(oracle, tokenizer))
    rows = {}
    for name, folder in folders.items():
        model = {"target": target, "oracle": oracle}.get(name) or load_model(folder)[1]
        rows[name] = {"model": folder, **evaluator(model, tokenizer)}
        print(name, json.dumps({k: round(v, 4) for k, v in rows[name].items() if k != "model"}), flush=True)

    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    sets = {name: len(getattr(evaluator, name)) for name in ("forget", "retain", "real_authors", "world_facts")}
    (output / "tofu.json").write_text(json.dumps({"seed": args.seed, "questions": sets, "rows": rows}, indent=2))
    lines = ["| model | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    lines += [f"| {name} | " + " | ".join(f"{row[c]:.3g}" for c in COLUMNS) + " |" for name, row in rows.items()]
    (output / "tofu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
