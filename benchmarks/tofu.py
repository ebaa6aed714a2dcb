"""Benchmark: TOFU's metrics on the fictitious-facts scenario, for the target, the oracle and every tuned method.

The fictitious facts (``hf_unlearn.data.fictitious``) written in TOFU's schema are scored by ``TOFUEvaluator``
(``hf_unlearn.scenarios.fictitious_tofu_evaluator``): forget quality against the oracle (SmolLM2 fine-tuned on the
retain facts only, ``benchmarks/oracle.py``), which plays TOFU's retain model, and model utility over the retain
facts and the US state and world capitals the target knows.

Every method the quality benchmark evaluated on the fictitious scenario (``benchmarks/quality.py --scenarios
fictitious``) is a row twice: after unlearning, and at the attacker's best. The quality benchmark keeps no weights, so
each is made again as its held-out evaluation made it (tuned settings, held-out split, seed; deterministic), and the
attack that reached the attacker's best is run again with TOFU's metrics at every evaluation: the row is its point at
the recorded step, whose split-B accuracy is checked against the recorded one. For an attack that trains nothing
(quantization, prompts, examples in the context) TOFU's questions are asked of the unlearned weights (quantized
ones for a quantize attack) without the attack's prefixes, which only the facts evaluators carry: marked in the table.

    nice -n 19 python benchmarks/tofu.py --threads 1                         # target, oracle, the tuned methods
    python benchmarks/tofu.py --models npo=outputs/npo mudman=outputs/mudman    # and models of your own, after unlearning

Writes ``tofu.json`` (with the machine and package versions) and ``tofu.md`` to ``--output_dir``
(``benchmarks/results/tofu``), a method's rows as soon as they are scored. Run again, it reads back the rows of every
method whose quality evaluation (tuned settings, attacker's best) is the one they were scored from, and scores the
others: new methods, re-tuned ones. The target's and the oracle's rows (no unlearning, no attack) are scored every time.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from hf_unlearn.attacks import ATTACK_KINDS
from hf_unlearn.data.fictitious import oracle_models
from hf_unlearn.environment import environment
from hf_unlearn.evaluation.report import finite_or_null
from hf_unlearn.model_card import saved_weights_digest
from hf_unlearn.models import load_model
from hf_unlearn.pipeline import attack, unlearn
from hf_unlearn.scenarios import fictitious_tofu_evaluator

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("quality", HERE / "quality.py")
quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quality)

COLUMNS = ("forget_quality", "model_utility", "forget_truth_ratio", "forget_probability", "forget_rouge", "retain_probability", "retain_rouge")


def split_b(evaluation: dict) -> dict[str, float | None]:
    """Split-B accuracy of a quality evaluation: before the attacks, and at the attacker's best."""
    best = evaluation.get("attack_best") or {}
    return {"split_b_accuracy": (evaluation.get("after_unlearning") or {}).get("facts_accuracy"), "split_b_at_attackers_best": best.get("facts_accuracy")}


def tuned_rows(args: argparse.Namespace, evaluator: Any, target_path: str, recorded: dict[str, dict]) -> Iterator[tuple[str, dict]]:
    """``("<method>", row)`` and ``("<method> at the attacker's best", row)`` for every method with a fictitious
    evaluation, each pair as it is computed; a method whose rows are ``recorded`` from the same evaluation (its
    settings and attacker's best) is read back."""
    qargs = quality.parse_args(["--output_dir", args.quality_dir, "--scale", args.scale])
    scale = quality.SCALES[args.scale]
    for name in quality.METHODS:
        path = quality.evaluation_path(qargs, "fictitious", name)
        evaluation = json.loads(path.read_text()) if path.is_file() else {}
        if not evaluation.get("settings"):
            continue
        best = evaluation.get("attack_best")
        inputs = finite_or_null({"settings": evaluation["settings"], "attack_best": best and {k: best.get(k) for k in ("attack", "step", "variant", "facts_accuracy")}})
        attacked = f"{name} at the attacker's best"
        if recorded.get(name, {}).get("inputs") == inputs:
            yield name, recorded[name]
            if attacked in recorded:
                yield attacked, recorded[attacked]
            continue
        scenario, tokenizer, seed = quality.held_out_scenario(qargs, scale, name, "fictitious")
        fixed = quality.sweep_arguments(qargs, scale, name, "fictitious").fixed
        with tempfile.TemporaryDirectory() as scratch:
            config = quality.held_out_config(name, scale, fixed, evaluation["settings"], scratch, seed)
            model = unlearn(load_model(target_path)[1], config, scenario, tokenizer).model
            row = {"model": f"{name}, tuned (quality benchmark)", **split_b(evaluation), **evaluator(model, tokenizer), "inputs": inputs}
            if best is None:
                yield name, row
                continue
            scored = dataclasses.replace(scenario, evaluators={**scenario.evaluators, "tofu": evaluator})
            suite = quality.evaluation_suite(scale, Path(scratch) / "attack", scenario.best_metric, seed, attacks=[best["attack"]])
            curve = attack(model, suite, scored, tokenizer).attacks[best["attack"]]["curve"]
        point = next(p for p in curve if p["step"] == best["step"] and p.get("variant") == best.get("variant"))
        if abs(point["facts_accuracy"] - best["facts_accuracy"]) > 1e-9:
            raise RuntimeError(f"{name}: the attack run again reached split-B accuracy {point['facts_accuracy']} at step {best['step']}, "
                               f"the evaluation recorded {best['facts_accuracy']}: not the same run")  # fmt: skip
        trains = ATTACK_KINDS[suite.attacks[best["attack"]].kind].trains
        yield name, row  # the pair together: a method is read back only with both of its rows
        yield attacked, {
            "model": f"{name} after {best['attack']}, step {best['step']}" + ("" if trains else " (TOFU's questions without the attack's prefixes)"),
            "split_b_accuracy": best["facts_accuracy"], **{k.removeprefix("tofu_"): v for k, v in point.items() if k.startswith("tofu_")},
        }  # fmt: skip


# What every row depends on besides its method: the facts, the scale, and the weights of the target (unlearned) and
# the oracle (forget quality's reference). A cache rebuilt on another machine differs slightly in the weights.
TERMS = ("seed", "questions", "models", "scale")


def recorded_rows(previous: dict, record: dict) -> dict[str, dict]:
    """The rows of an earlier ``tofu.json`` (``previous``) that may be read back: all of them if it was scored on the
    same ``TERMS`` as ``record``, none otherwise."""
    return previous.get("rows", {}) if all(previous.get(key) == record[key] for key in TERMS) else {}


def write_tables(output: Path, record: dict) -> str:
    """``tofu.json`` and ``tofu.md`` in ``output`` from ``record``; returns the Markdown table."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "tofu.json").write_text(json.dumps(finite_or_null(record), indent=2))
    rows = record["rows"]
    columns = ("split_b_accuracy", "split_b_at_attackers_best", *COLUMNS)
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    lines += [f"| {name} | " + " | ".join("" if row.get(c) is None else f"{row[c]:.3g}" for c in columns) + " |" for name, row in rows.items()]
    notes = [f"- {name}: {row['model']}" for name, row in rows.items() if "attacker's best" in name]
    (output / "tofu.md").write_text("\n".join(lines + ([""] + notes if notes else [])) + "\n")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="The fictitious facts' seed (benchmarks/oracle.py --seed).")
    parser.add_argument("--models", nargs="*", default=[], help="More rows: NAME=FOLDER of models unlearned from the target.")
    parser.add_argument("--quality_dir", default=str(quality.RESULTS), help="The quality benchmark's state: its tuned methods are rows.")
    parser.add_argument("--scale", default="default", choices=sorted(quality.SCALES), help="The scale that state was computed at.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output_dir", default=str(HERE / "results" / "tofu"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    folders = {name: str(path) for name, path in oracle_models(args.seed).items()}
    folders.update(dict(entry.split("=", 1) for entry in args.models))
    _, target, tokenizer = load_model(folders["target"])
    evaluator = fictitious_tofu_evaluator(target, tokenizer, args.seed)
    _, oracle, _ = load_model(folders["oracle"])
    evaluator = dataclasses.replace(evaluator, reference=evaluator.reference_results(oracle, tokenizer))
    output = Path(args.output_dir)
    sets = {name: len(getattr(evaluator, name)) for name in ("forget", "retain", "real_authors", "world_facts")}
    digests = {name: saved_weights_digest(folders[name]) for name in ("target", "oracle")}
    record = {"seed": args.seed, "questions": sets, "models": digests, "quality_dir": args.quality_dir, "scale": args.scale, "rows": {},
              "environment": environment()}  # fmt: skip
    previous = json.loads((output / "tofu.json").read_text()) if (output / "tofu.json").is_file() else {}
    recorded = recorded_rows(previous, record)
    qargs = quality.parse_args(["--output_dir", args.quality_dir, "--scale", args.scale])
    for name, folder in folders.items():  # the fixed models: cheap, always scored again
        model = {"target": target, "oracle": oracle}.get(name) or load_model(folder)[1]
        path = quality.evaluation_path(qargs, "fictitious", {"target": "no_unlearning"}.get(name, name))
        attacked = split_b(json.loads(path.read_text())) if name in ("target", "oracle") and path.is_file() else {}
        record["rows"][name] = {"model": folder, **attacked, **evaluator(model, tokenizer)}
        print(name, json.dumps({k: round(v, 4) for k, v in record["rows"][name].items() if isinstance(v, float)}), flush=True)
    for name, row in tuned_rows(args, evaluator, folders["target"], recorded):
        record["rows"][name] = row
        write_tables(output, record)  # each row as it comes: an interrupted run keeps what it finished
        print(name, json.dumps({k: round(v, 4) for k, v in row.items() if isinstance(v, float)}), flush=True)
    print(write_tables(output, record))


if __name__ == "__main__":
    main()
