"""The mutation check's list stays in step with the code: every mutant finds the code it removes, once,
and names a test that exists (``tests/mutations/run.py`` runs them; a stale mutant would check nothing)."""

import ast
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "mutations"))
import run as mutations  # noqa: E402


def test_every_mutant_finds_its_code_once_and_names_an_existing_test():
    problems = []
    for name, (path, original, mutant, test) in mutations.MUTANTS.items():
        if why := mutations.stale(path, original):
            problems.append(f"{name}: {why}")
        if original == mutant:
            problems.append(f"{name}: the mutant is the code itself")
        test_file, test_name = test.split("::")[0], test.split("::")[-1].split("[")[0]
        tests = {node.name for node in ast.walk(ast.parse((mutations.ROOT / test_file).read_text())) if isinstance(node, ast.FunctionDef)}
        if test_name not in tests:
            problems.append(f"{name}: {test} does not exist")
    assert not problems, "\n".join(problems)
