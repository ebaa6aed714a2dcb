"""The registry of unlearning methods: a name maps to everything the method owns.

``register_method`` carries a method's config class, objective and update procedure, and also its
citation (for model cards) and its search space with the source of its published values (for
sweeps): a new method is one file, and the CLI, the sweep, the card and the tests read it from here.
A leaf module: method files register into it and configs look themselves up in it, so neither
imports the other.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import importlib
import inspect
import textwrap
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Citation:
    """A method's paper, as its model card cites it."""

    key: str
    title: str
    authors: str
    arxiv: str

    def bibtex(self) -> str:
        return f"@article{{{self.key},\n  title={{{self.title}}},\n  author={{{self.authors}}},\n  journal={{arXiv preprint arXiv:{self.arxiv}}}\n}}"


def around(published: float, decades: float = 1.0) -> dict[str, Any]:
    """A search range ``decades`` either side of ``published`` (log scale), which a sweep tries first."""
    return {"low": published / 10**decades, "high": published * 10**decades, "log": True, "published": published}


@dataclass(frozen=True)
class MethodSpec:
    """What ``method=name`` means: its config class, what it optimises, how a step is taken, what to cite,
    and how a sweep tunes it."""

    name: str
    config: type  # an UnlearnConfig subclass
    objective: type  # an hf_unlearn.objective.Objective subclass
    procedure: type  # an hf_unlearn.components.procedures.UpdateProcedure subclass
    citation: Citation | None = None
    # At most three settings, each about a decade either side of its published value (``around``), which a
    # sweep's first trial takes; ``search_space_source`` names the paper or config file of those values.
    search_space: dict[str, dict[str, Any]] = field(default_factory=dict)
    search_space_source: str = ""
    sweep_fixed: dict[str, Any] = field(default_factory=dict)  # settings every sweep trial gets unless overridden

    def check_args(self, args: Any) -> None:
        """Refuse settings this method cannot honour, or does not read, naming the field and the fix."""
        if not isinstance(args, self.config):
            raise ValueError(
                f"method={self.name!r} is configured by {self.config.__name__}, got {type(args).__name__}: "
                f"build hf_unlearn.{self.config.__name__}(...) instead"
            )
        self.procedure.check_args(args, self)


_METHODS: dict[str, MethodSpec] = {}
# Hooks an objective once had, and what does their work now: an objective defining one would be ignored silently.
_REMOVED_HOOKS = {
    "callbacks": "pass TrainerCallbacks to UnlearnTrainer(callbacks=...); a disruption budget is UnlearnConfig.disruption_budget",
    "check_eval_dataset": "check the evaluation sets before building the trainer; the disruption budget's check is UnlearnTrainer's",
}


def register_method(
    name: str,
    *,
    config: type,
    procedure: type,
    citation: Citation | None = None,
    search_space: dict[str, dict[str, Any]] | None = None,
    search_space_source: str = "",
    sweep_fixed: dict[str, Any] | None = None,
):
    """Class decorator for an objective: ``method=name`` trains it with ``procedure``, configured by ``config``;
    the card cites ``citation``; ``hf-unlearn sweep --method name`` searches ``search_space``."""

    def decorator(objective: type) -> type:
        if name in _METHODS:
            raise ValueError(f"a method named {name!r} is already registered")
        for hook, instead in _REMOVED_HOOKS.items():
            if hook in vars(objective):
                raise TypeError(f"method {name!r}: Objective.{hook} is no longer called; {instead}")
        fields = {f.name for f in dataclasses.fields(config)}
        unknown = sorted((set(search_space or {}) | set(sweep_fixed or {})) - fields)
        if unknown:
            raise ValueError(f"method {name!r}: its search space or sweep settings name {unknown}, which {config.__name__} does not have")
        if len(search_space or {}) > 3:
            raise ValueError(f"method {name!r}: search at most 3 settings (a sweep's few trials cannot tune more), got {sorted(search_space)}")
        missing = {read: owner for read, owner in settings_read(procedure, objective).items() if not _has_setting(config, read)}
        if missing:
            raise TypeError(
                f"method {name!r}: " + "; ".join(f"{owner.__name__} reads args.{read}" for read, owner in sorted(missing.items()))
                + f", which {config.__name__} lacks: add the field (or the component arguments that hold it) to {config.__name__}"
            )
        _METHODS[name] = MethodSpec(name, config, objective, procedure, citation, dict(search_space or {}), search_space_source, dict(sweep_fixed or {}))
        objective.method_name = name
        _refuse_foreign_settings(config, name)
        return objective

    return decorator


def settings_read(procedure: type, objective: type) -> dict[str, type]:
    """``{setting: objective}`` for every setting the objective reads (``args.X``, ``self.args.X``) in the methods the
    procedure calls (``self.objective.X``), followed through ``self.Y(...)`` calls: the inherited defaults included
    (``loss_weights`` reads the rates). Checked at registration, so a config lacking one fails there rather than at a
    run's first step. (Procedures read optional components' settings behind their switches, ``getattr(args, ...)``.)
    Code without source (defined interactively) is skipped."""
    read: dict[str, type] = {}
    _reads(objective, _reads(procedure, None, {}), read)
    return read


def _reads(cls: type, entry_points: set[str] | None, read: dict[str, type]) -> set[str]:
    """Record in ``read`` the settings ``cls`` reads from ``entry_points`` (None: all its methods); return the objective's
    methods it calls."""
    functions = dict(inspect.getmembers(cls, inspect.isfunction))
    todo, seen, objective_calls = list(functions if entry_points is None else entry_points), set(), set()
    while todo:
        name = todo.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(functions[name])))
        except (OSError, TypeError, SyntaxError):
            continue
        # ``args = self.args`` binds a local name to the config; another ``args`` (a hook's) is not it.
        aliases = {target.id for node in ast.walk(tree) if isinstance(node, ast.Assign) and _is_self_attribute(node.value, "args")
                   for target in node.targets if isinstance(target, ast.Name)}  # fmt: skip
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load)):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id == "self":
                todo.append(node.attr)
            elif (isinstance(owner, ast.Name) and owner.id in aliases) or _is_self_attribute(owner, "args"):
                read.setdefault(node.attr, cls)
            elif _is_self_attribute(owner, "objective"):
                objective_calls.add(node.attr)
    return objective_calls


def _is_self_attribute(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == name and isinstance(node.value, ast.Name) and node.value.id == "self"


def _has_setting(config: type, name: str) -> bool:
    return name in {f.name for f in dataclasses.fields(config)} or hasattr(config, name)  # fields, or properties (world_size)


def _refuse_foreign_settings(config: type, method: str) -> None:
    """Make ``config(...)`` name the method when given a setting it does not have (another method's, or a typo)."""
    init = config.__init__

    @functools.wraps(init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if type(self) is config:  # a subclass registered as another method checks its own fields
            known = {f.name for f in dataclasses.fields(config) if f.init}
            for key in kwargs.keys() - known:
                close = difflib.get_close_matches(key, known, n=1)
                raise TypeError(
                    f"{key}={kwargs[key]!r} is not used by method {method!r}: {config.__name__} has no such setting, since "
                    f"neither its objective nor its update reads one.{f' Did you mean {close[0]!r}?' if close else ''}"
                )
        init(self, *args, **kwargs)

    config.__init__ = __init__


def _load_builtin_methods() -> None:
    """The built-in methods register themselves when ``hf_unlearn.methods`` is imported. The registry loads that
    package on first lookup, as plugins are loaded (by name, not a static import: the methods sit above the
    registry), so that every import path sees them (``hf_unlearn`` imports its names lazily)."""
    importlib.import_module("hf_unlearn.methods")


def available_methods() -> list[str]:
    _load_builtin_methods()
    return sorted(_METHODS)


def get_method(name: str) -> MethodSpec:
    _load_builtin_methods()
    try:
        return _METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; available methods: {', '.join(available_methods())}") from None
