"""Datasets for unlearning: recipes for the Hub datasets papers use, facts, offline sources, shared processing."""

from .collator import LMCollator
from .facts import (
    encode_fact,
    fact_sentences,
    facts,
    facts_protocol_splits,
    tokenize_facts,
    us_state_capitals,
    world_capitals,
)
from .fictitious import chance_accuracy, fictitious_facts
from .offline import pydoc_prose, python_stdlib_source
from .pairing import RetainStream
from .processing import chunk_tokens, prepare_eval_datasets, prepare_lm_dataset, split_dataset, unlearning_splits
from .recipes import code_search_net_python, mmlu, pile_bio, wikitext, wmdp, wmdp_corpus
from .schema import DatasetSchemaError
from .sources import OFFLINE_SOURCES, TEXT_SOURCES, DataArguments, build_unlearning_data, load_text_source

__all__ = [
    "OFFLINE_SOURCES",
    "TEXT_SOURCES",
    "DataArguments",
    "DatasetSchemaError",
    "LMCollator",
    "RetainStream",
    "build_unlearning_data",
    "chance_accuracy",
    "chunk_tokens",
    "code_search_net_python",
    "encode_fact",
    "fact_sentences",
    "facts",
    "fictitious_facts",
    "facts_protocol_splits",
    "load_text_source",
    "mmlu",
    "pile_bio",
    "prepare_eval_datasets",
    "prepare_lm_dataset",
    "pydoc_prose",
    "python_stdlib_source",
    "split_dataset",
    "tokenize_facts",
    "unlearning_splits",
    "wikitext",
    "wmdp",
    "wmdp_corpus",
    "us_state_capitals",
    "world_capitals",
]
