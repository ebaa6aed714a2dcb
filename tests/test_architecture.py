"""The package's shape: no import cycles, and every import points down the layers (docs/design.md §2).

recipes / benchmarks -> pipeline -> trainers -> methods -> procedures, transforms, objective ->
losses / gradients. Every import counts, those under ``if TYPE_CHECKING:`` (annotations) included:
nothing below the trainer names it, even in a type hint (procedures get a ``StepContext``).
"""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hf_unlearn"

# Lower layers never import higher ones. A module belongs to the first prefix that matches it.
LAYERS = [
    ("hf_unlearn.losses", "hf_unlearn.gradients", "hf_unlearn.registry", "hf_unlearn.targets", "hf_unlearn.models",
     "hf_unlearn.tracking", "hf_unlearn.environment"),
    ("hf_unlearn.forward", "hf_unlearn.distributed", "hf_unlearn.data"),
    ("hf_unlearn.objective", "hf_unlearn.evaluation", "hf_unlearn.unlearn_config", "hf_unlearn.attacks.relearn_config", "hf_unlearn.attacks.attack",
     "hf_unlearn.attacks.inputs"),
    ("hf_unlearn.components", "hf_unlearn.model_card", "hf_unlearn.callbacks"),
    ("hf_unlearn.methods",),
    ("hf_unlearn.causal_lm_trainer", "hf_unlearn.unlearn_trainer", "hf_unlearn.attacks.relearn_trainer", "hf_unlearn.undo"),
    ("hf_unlearn.attacks", "hf_unlearn.scenarios"),
    ("hf_unlearn.pipeline",),
    ("hf_unlearn.sweep",),
    ("hf_unlearn.commands", "hf_unlearn.cli"),
    ("hf_unlearn",),
]  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}
DYNAMIC = "<a module named at run time>"


def imported_modules(name: str, path: Path) -> set[str]:
    """hf_unlearn modules that ``name`` imports at run time (at module level or inside functions), by ``import`` or by
    ``importlib.import_module`` of a literal name; a target that is not a literal is recorded as ``DYNAMIC``."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module" and node.args:
            target = node.args[0]
            if not (isinstance(target, ast.Constant) and isinstance(target.value, str)):
                found.add(DYNAMIC)
            elif target.value.startswith("."):
                found.add(f"{package}{target.value}")
            else:
                found.add(target.value)
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("hf_unlearn"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([node.module] if node.module else []))
            if base.startswith("hf_unlearn"):
                # ``from . import hub`` imports a submodule; ``from .data import X`` imports the package.
                found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {module for module in found if (module in MODULES or module == DYNAMIC) and module != name}


IMPORTS = {name: imported_modules(name, path) for name, path in MODULES.items()}
GRAPH = {name: targets - {DYNAMIC} for name, targets in IMPORTS.items()}


def layer(name: str) -> int:
    return next(i for i, prefixes in enumerate(LAYERS) if any(name == p or name.startswith(p + ".") for p in prefixes))


def test_no_import_cycles():
    state: dict[str, str] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in GRAPH[node]:
            if state.get(target) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(target) :] + [target]))
            if target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for name in GRAPH:
        if name not in state:
            visit(name, [name])


def test_imports_point_down_the_layers():
    upward = [
        f"{source} (layer {layer(source)}) imports {target} (layer {layer(target)})"
        for source, targets in GRAPH.items()
        for target in targets
        if layer(target) > layer(source) and not source.startswith(target + ".")  # a package's own __init__
    ]
    assert not upward, "\n".join(upward)


def test_only_the_top_level_package_names_modules_at_run_time():
    """Its lazy exports, from the top layer, may import anything; anywhere else a computed module name could point up
    unseen."""
    assert [name for name, targets in IMPORTS.items() if DYNAMIC in targets] == ["hf_unlearn"]


def test_the_graph_is_read():
    assert "hf_unlearn.components" in GRAPH["hf_unlearn.methods.mudman"]
    assert "hf_unlearn.components.procedures" in GRAPH["hf_unlearn.methods.cir"]
    assert "hf_unlearn.methods" in GRAPH["hf_unlearn.unlearn_trainer"]
    assert "hf_unlearn.commands" in GRAPH["hf_unlearn.cli"]


def test_import_module_targets_are_read(tmp_path):
    """A module loaded by name points up as surely as an import statement does."""
    source = tmp_path / "registry.py"
    source.write_text("import importlib\n\ndef load():\n    importlib.import_module('hf_unlearn.methods')\n    importlib.import_module(NAME)\n")
    assert imported_modules("hf_unlearn.registry", source) == {"hf_unlearn.methods", DYNAMIC}
    assert "hf_unlearn.registry" in GRAPH["hf_unlearn.components.procedures"], "annotation-only imports count too"
    below_the_trainer = [name for name in GRAPH if layer(name) < layer("hf_unlearn.unlearn_trainer")]
    assert not [name for name in below_the_trainer if "hf_unlearn.unlearn_trainer" in GRAPH[name]], "procedures get a StepContext"


def test_the_commands_start_without_the_libraries_only_tofu_and_muse_metrics_use():
    """scipy.stats, sklearn and rouge_score (with nltk) are imported where TOFU's and MUSE's metrics run: imported
    with the package they added 5 s to the start of every command (hf_unlearn/evaluation/benchmarks.py)."""
    code = "import sys, hf_unlearn.commands; print(sorted(m for m in ('sklearn', 'rouge_score', 'nltk', 'scipy.stats') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
