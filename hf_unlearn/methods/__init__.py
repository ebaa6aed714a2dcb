"""Unlearning methods, one file each: a config, an objective, and one registration carrying them with the
update procedure, the citation and the search space (``hf_unlearn.registry.register_method``).

Importing this package imports every module in it, which registers its method: a new method is one new
file. Its names are reached through the registry (``hf_unlearn.get_method("npo").config``) or its module.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
