"""Datasets for unlearning: processing shared by every recipe, and offline sources."""

from .collator import LMCollator
from .offline import pydoc_prose, python_stdlib_source
from .pairing import RetainStream
from .processing import chunk_tokens, prepare_eval_datasets, prepare_lm_dataset, split_dataset, unlearning_splits
from .sources import OFFLINE_SOURCES, DataArguments, build_unlearning_data, load_text_source

__all__ = [
    "OFFLINE_SOURCES",
    "DataArguments",
    "LMCollator",
    "RetainStream",
    "build_unlearning_data",
    "chunk_tokens",
    "load_text_source",
    "prepare_eval_datasets",
    "prepare_lm_dataset",
    "pydoc_prose",
    "python_stdlib_source",
    "split_dataset",
    "unlearning_splits",
]
