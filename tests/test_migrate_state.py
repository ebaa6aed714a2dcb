"""benchmarks/migrate_state.py: state in an earlier format rewritten once into the one the package reads."""

import importlib.util
import json
from pathlib import Path

spec = importlib.util.spec_from_file_location("migrate_state", Path(__file__).resolve().parents[1] / "benchmarks" / "migrate_state.py")
migrate_state = importlib.util.module_from_spec(spec)
spec.loader.exec_module(migrate_state)


def test_attack_results_without_a_kind_get_fine_tune_once_and_current_files_stay_untouched(tmp_path):
    old = {"settings": "adamw", "curve": [{"step": 0, "forget_loss": 3.0}], "best": {"step": 0, "forget_loss": 3.0}, "diverged_at": None}
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "attack_result.json").write_text(json.dumps(old))
    evaluation = {"name": "npo", "attacks": {"attacks": {"adamw": dict(old), "int8": {**old, "kind": "quantize"}}}}
    (tmp_path / "evaluation.json").write_text(json.dumps(evaluation, indent=2) + "\n")
    current = tmp_path / "current.json"
    current.write_text(json.dumps({**old, "kind": "prompt"}))
    written = current.stat().st_mtime_ns

    assert migrate_state.migrate(tmp_path) == {str(tmp_path / "a" / "attack_result.json"): 1, str(tmp_path / "evaluation.json"): 1}
    assert json.loads((tmp_path / "a" / "attack_result.json").read_text())["kind"] == "fine_tune"
    attacks = json.loads((tmp_path / "evaluation.json").read_text())["attacks"]["attacks"]
    assert (attacks["adamw"]["kind"], attacks["int8"]["kind"]) == ("fine_tune", "quantize")
    assert (tmp_path / "evaluation.json").read_text().startswith("{\n  "), "the layout is kept"
    assert current.stat().st_mtime_ns == written and migrate_state.migrate(tmp_path) == {}, "idempotent"
