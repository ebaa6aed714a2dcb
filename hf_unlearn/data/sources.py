"""Text sources by name, and the forget/retain data a recipe trains and evaluates on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset, load_dataset
from transformers import PreTrainedTokenizerBase

from .offline import pydoc_prose, python_stdlib_source
from .processing import unlearning_splits

OFFLINE_SOURCES = {"python_stdlib": python_stdlib_source, "pydoc_prose": pydoc_prose}
_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}


def load_text_source(name: str, split: str = "train") -> Dataset:
    """``name``: an offline source (``python_stdlib``, ``pydoc_prose``), a local data file, or a Hub dataset id."""
    if name in OFFLINE_SOURCES:
        return OFFLINE_SOURCES[name]()
    builder = _FILE_BUILDERS.get(Path(name).suffix)
    if builder is not None:
        if not Path(name).is_file():
            raise FileNotFoundError(f"data file {name} does not exist")
        return load_dataset(builder, data_files=name, split=split)
    return load_dataset(name, split=split)


@dataclass
class DataArguments:
    """Which forget and retain text to use and how to cut it (the recipes' data section)."""

    forget_source: str = field(
        default="python_stdlib",
        metadata={"help": f"Forget text: {', '.join(OFFLINE_SOURCES)}, a local .json/.jsonl/.csv/.parquet/.txt file, or a Hub dataset id."},
    )
    retain_source: str = field(default="pydoc_prose", metadata={"help": "Retain text, same choices as forget_source."})
    source_split: str = field(default="train", metadata={"help": "Split read from file and Hub sources."})
    text_field: str = field(default="text", metadata={"help": "Text column of the sources."})
    max_forget_documents: int | None = field(
        default=None, metadata={"help": "Use a seeded random sample of this many forget documents."}
    )
    chunk_length: int = field(default=100, metadata={"help": "Tokens per example; shorter tails are dropped."})
    split_seed: int = field(default=42, metadata={"help": "Seed of the document sample and the splits."})
    max_unlearn_examples: int | None = field(default=None, metadata={"help": "Cap on forget_unlearn chunks."})
    max_attack_examples: int | None = field(default=None, metadata={"help": "Cap on forget_attack chunks."})
    max_eval_examples: int | None = field(default=64, metadata={"help": "Cap on each held-out eval split."})


def build_unlearning_data(args: DataArguments, tokenizer: PreTrainedTokenizerBase) -> dict:
    """``{"unlearn", "attack", "retain", "eval": {"forget", "retain"}}`` as fixed-length token chunks.

    Deterministic in ``args``: the unlearning and the attack script rebuild the same splits.
    """
    forget_text = load_text_source(args.forget_source, args.source_split)
    if args.max_forget_documents is not None:
        forget_text = forget_text.shuffle(seed=args.split_seed).select(range(min(args.max_forget_documents, len(forget_text))))
    retain_text = load_text_source(args.retain_source, args.source_split)
    splits = unlearning_splits(
        forget_text, retain_text, tokenizer, chunk_length=args.chunk_length, text_field=args.text_field, seed=args.split_seed
    )

    def capped(split: str, limit: int | None) -> Dataset:
        return splits[split] if limit is None else splits[split].select(range(min(limit, len(splits[split]))))

    return {
        "unlearn": capped("forget_unlearn", args.max_unlearn_examples),
        "attack": capped("forget_attack", args.max_attack_examples),
        "retain": splits["retain_train"],
        "eval": {
            "forget": capped("forget_eval", args.max_eval_examples),
            "retain": capped("retain_eval", args.max_eval_examples),
        },
    }
