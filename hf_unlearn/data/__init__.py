"""Datasets for unlearning: processing shared by every recipe, and offline sources."""

from .collator import LMCollator
from .offline import pydoc_prose, python_stdlib_source
from .pairing import RetainStream
from .processing import chunk_tokens, prepare_eval_datasets, prepare_lm_dataset, split_dataset

__all__ = [
    "LMCollator",
    "RetainStream",
    "chunk_tokens",
    "prepare_eval_datasets",
    "prepare_lm_dataset",
    "pydoc_prose",
    "python_stdlib_source",
    "split_dataset",
]
