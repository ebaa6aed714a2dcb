"""The registry of unlearning methods: a name maps to everything the method owns.

``register_method`` carries a method's config class, objective and update procedure, and also its
citation (for model cards) and its search space with the source of its published values (for
sweeps): a new method is one file, and the CLI, the sweep, the card and the tests read it from here.
A leaf module: method files register into it, and ``hf_unlearn.methods`` imports every built-in method
file, so code that looks a method up imports ``hf_unlearn.methods`` (imports point down: the registry
never loads the methods itself).
"""

from __future__ import annotations

import dataclasses
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
    # The search-space setting that sets the size of an update: where a forget set needs larger steps than the
    # published ones (benchmarks/quality.py's fictitious facts), a benchmark moves this range alone.
    step_size_setting: str = "learning_rate"

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
    step_size_setting: str = "learning_rate",
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
        if search_space and step_size_setting not in search_space:
            raise ValueError(f"method {name!r}: step_size_setting={step_size_setting!r} is not in its search space {sorted(search_space)}: "
                             "name the setting that sets the size of an update")  # fmt: skip
        if len(search_space or {}) > 3:
            raise ValueError(f"method {name!r}: search at most 3 settings (a sweep's few trials cannot tune more), got {sorted(search_space)}")
        missing = [read for read in objective.reads if not _has_setting(config, read)]
        if missing:
            raise TypeError(
                f"method {name!r}: {objective.__name__} reads " + ", ".join(f"args.{read}" for read in missing)
                + f", which {config.__name__} lacks: add the field (or the component arguments that hold it) to {config.__name__}"
            )
        _METHODS[name] = MethodSpec(name, config, objective, procedure, citation, dict(search_space or {}), search_space_source, dict(sweep_fixed or {}),
                                   step_size_setting)  # fmt: skip
        objective.method_name = name
        return objective

    return decorator


def _has_setting(config: type, name: str) -> bool:
    return name in {f.name for f in dataclasses.fields(config)} or hasattr(config, name)  # fields, or properties (world_size)


def available_methods() -> list[str]:
    """The registered methods: the built-in ones once ``hf_unlearn.methods`` is imported, and any registered since."""
    return sorted(_METHODS)


def get_method(name: str) -> MethodSpec:
    try:
        return _METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; available methods: {', '.join(available_methods())}") from None
