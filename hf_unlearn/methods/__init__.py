"""Unlearning methods, one file each: a config, an objective, and one registration carrying them with the
update procedure, the citation and the search space (``hf_unlearn.registry.register_method``).

Importing this package imports every module in it, which registers its method: a new method is one new
file. Its names are reached through the registry (``hf_unlearn.get_method("npo").config``) or its module.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def __getattr__(name: str):
    """``hf_unlearn.methods.MUDMANConfig`` and the like: any name a method module defines."""
    for module in pkgutil.iter_modules(__path__):
        defined = importlib.import_module(f"{__name__}.{module.name}")
        if hasattr(defined, name):
            return getattr(defined, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
