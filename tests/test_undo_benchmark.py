"""benchmarks/undo.py's state: each run its own folder, and the committed table is what the committed state prints."""

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_undo(monkeypatch):
    spec = importlib.util.spec_from_file_location("undo_benchmark", BENCHMARKS / "undo.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "undo_benchmark", module)
    spec.loader.exec_module(module)
    return module


def test_a_variant_of_a_run_gets_its_own_state_and_the_standard_runs_keep_theirs(monkeypatch):
    undo = load_undo(monkeypatch)
    standard = undo.Run("facts", "mudman", 0.3, undo.FRONTIER)
    assert standard.key == "facts/mudman/0.3" and undo.run_folder(standard) == undo.RESULTS / "facts" / "mudman" / "alpha0.3"
    variants = [standard._replace(forget_text=False), standard._replace(steps=(1600,)), standard._replace(steps=(1600,), forget_text=False)]
    assert [undo.run_folder(run).name for run in variants] == ["alpha0.3_retain_only", "alpha0.3_1600_steps", "alpha0.3_1600_steps_retain_only"]
    assert len({run.key for run in [standard, *variants]}) == 4 and len(undo.RUNS_BY_KEY) == len({run.key for run in undo.RUNS + undo.PILOT_RUNS})
    assert undo.label(variants[2]) == "mudman + UNDO (1600 steps retain only)"
    assert standard._replace(learning_rate=1e-4).key == "facts/mudman/0.3/lr_0.0001", "the authors' rate is the standard's"
    assert undo.parse_args([]).runs == [run.key for run in undo.RUNS], "RUNS, in order"
    assert set(undo.PILOT_RUNS) - set(undo.RUNS), "the pilots not attacked run only when named"


def test_the_committed_table_is_what_the_committed_state_prints(monkeypatch):
    undo = load_undo(monkeypatch)
    assert undo.markdown(undo.collect()) == (undo.RESULTS / "undo.md").read_text(), "python benchmarks/undo.py --report"
