"""The registry of unlearning methods: a name maps to (config class, objective, update procedure).

A leaf module: method files register into it and configs look themselves up in it, so neither
imports the other.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MethodSpec:
    """What ``method=name`` means: its config class, what it optimises and how a step is taken."""

    name: str
    config: type  # an UnlearnConfig subclass
    objective: type  # an hf_unlearn.objective.Objective subclass
    procedure: type  # an hf_unlearn.components.procedures.UpdateProcedure subclass

    def check_args(self, args: Any) -> None:
        """Refuse settings this method cannot honour, or does not read, naming the field and the fix."""
        if not isinstance(args, self.config):
            raise ValueError(
                f"method={self.name!r} is configured by {self.config.__name__}, got {type(args).__name__}: "
                f"build hf_unlearn.{self.config.__name__}(...) instead"
            )
        self.procedure.check_args(args, self)


_METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, *, config: type, procedure: type):
    """Class decorator for an objective: ``method=name`` trains it with ``procedure``, configured by ``config``."""

    def decorator(objective: type) -> type:
        if name in _METHODS:
            raise ValueError(f"a method named {name!r} is already registered")
        _METHODS[name] = MethodSpec(name, config, objective, procedure)
        objective.method_name = name
        _refuse_foreign_settings(config, name)
        return objective

    return decorator


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
