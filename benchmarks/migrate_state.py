"""Bring benchmark state written by earlier versions up to the current format, so that the package reads one format.

    python benchmarks/migrate_state.py                      # benchmarks/results, rewritten in place
    python benchmarks/migrate_state.py OTHER_RESULTS_FOLDER

Idempotent: a file already in the current format is left untouched (not even rewritten). What it changes:

- attack results saved before attacks had kinds (every one was fine-tuning) get ``"kind": "fine_tune"``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent / "results"
FINE_TUNE = "fine_tune"  # hf_unlearn.attacks.FINE_TUNE, the kind every attack had before kinds existed


def with_attack_kinds(value: Any) -> int:
    """Add the kind to every attack result in ``value`` (a JSON document) that lacks one; the count added."""
    added = 0
    if isinstance(value, dict):
        if {"settings", "curve", "best"} <= value.keys() and "kind" not in value:
            value["kind"] = FINE_TUNE
            added += 1
        added += sum(with_attack_kinds(child) for child in value.values())
    elif isinstance(value, list):
        added += sum(with_attack_kinds(child) for child in value)
    return added


def migrate(folder: Path) -> dict[str, int]:
    """Rewrite each JSON file under ``folder`` that needs it, keeping its layout (indented or one line)."""
    changed = {}
    for path in sorted(folder.rglob("*.json")):
        text = path.read_text()
        document = json.loads(text)
        added = with_attack_kinds(document)
        if added:
            indent = 2 if text.startswith("{\n") or text.startswith("[\n") else None
            path.write_text(json.dumps(document, indent=indent) + ("\n" if text.endswith("\n") else ""))
            changed[str(path)] = added
    return changed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=ROOT)
    args = parser.parse_args(argv)
    changed = migrate(args.folder)
    print(f"{len(changed)} files updated ({sum(changed.values())} attack results given their kind) under {args.folder}")


if __name__ == "__main__":
    main()
