"""Unlearning methods, one file each, found by name through the registry."""

from .base import UnlearningMethod, available_methods, get_method_class, register_method
from .mudman import MUDMAN

__all__ = ["MUDMAN", "UnlearningMethod", "available_methods", "get_method_class", "register_method"]
