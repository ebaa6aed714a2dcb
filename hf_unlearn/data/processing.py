"""Shared dataset processing: tokenization with schema checks, fixed-length chunks, deterministic splits."""

from __future__ import annotations

from collections.abc import Sequence

from datasets import Dataset, DatasetDict, Value
from transformers import PreTrainedTokenizerBase
from transformers.utils import logging

logger = logging.get_logger(__name__)

MODEL_INPUT_COLUMNS = ("input_ids", "attention_mask", "labels")


def _text_column_error(dataset: Dataset, name: str, text_field: str) -> ValueError:
    return ValueError(
        f"the {name} dataset has columns {dataset.column_names}; it needs a text column {text_field!r} "
        f"(or name the column that holds the text: --text_field on the command line, dataset_text_field in a trainer's "
        "config) or a pre-tokenized 'input_ids' column"
    )


def check_text_rows(dataset: Dataset, text_field: str, name: str) -> None:
    """Every row of ``text_field`` holds a string: a missing text would fail deep inside the tokenizer."""
    missing = [row for row, text in enumerate(dataset[text_field]) if text is None]
    if missing:
        raise ValueError(
            f"the {name} dataset has no text ({text_field!r} is null) in rows {missing[:10]}"
            f"{' and more' if len(missing) > 10 else ''}: drop or fill those rows"
        )


def prepare_lm_dataset(
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase | None,
    *,
    name: str,
    text_field: str = "text",
    max_length: int | None = None,
) -> Dataset:
    """Return ``dataset`` as causal-LM examples: ``input_ids`` (with ``attention_mask``/``labels`` if present).

    A pre-tokenized dataset (an ``input_ids`` column) is kept (``labels``, if given, say which tokens
    count: ``-100`` marks the others); a text dataset is tokenized, its blank rows (whitespace only:
    nothing to learn or forget) dropped with a warning. Either is truncated to ``max_length`` tokens.
    Sequences of fewer than two tokens have no next-token target and are dropped. ``name`` ("forget",
    "retain", ...) names the dataset in errors.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"the {name} dataset must be a datasets.Dataset, got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise ValueError(f"the {name} dataset is empty; it needs at least one example")
    if "input_ids" in dataset.column_names:
        kept = [c for c in MODEL_INPUT_COLUMNS if c in dataset.column_names]
        prepared = dataset.select_columns(kept)
    else:
        if text_field not in dataset.column_names:
            raise _text_column_error(dataset, name, text_field)
        feature = dataset.features[text_field]
        if not (isinstance(feature, Value) and feature.dtype in ("string", "large_string")):
            raise ValueError(f"column {text_field!r} of the {name} dataset must hold strings, found {feature}")
        if tokenizer is None:
            raise ValueError(f"the {name} dataset holds text: pass a tokenizer as processing_class to tokenize it")
        check_text_rows(dataset, text_field, name)
        blank = sum(not text.strip() for text in dataset[text_field])
        if blank:
            logger.warning(f"the {name} dataset has {blank} blank rows (whitespace only): dropped")
            dataset = dataset.filter(lambda text: bool(text.strip()), input_columns=text_field, desc=f"Dropping blank {name} rows")
        prepared = dataset.map(
            lambda batch: tokenizer(batch[text_field], truncation=max_length is not None, max_length=max_length),
            batched=True,
            remove_columns=dataset.column_names,
            desc=f"Tokenizing {name} dataset",
        ).select_columns(["input_ids", "attention_mask"])
    if max_length is not None and "input_ids" in dataset.column_names and max(map(len, prepared["input_ids"]), default=0) > max_length:
        columns = prepared.column_names
        prepared = prepared.map(lambda row: {k: row[k][:max_length] for k in columns}, desc=f"Truncating {name} dataset")
    prepared = prepared.filter(lambda ids: len(ids) >= 2, input_columns="input_ids", desc=f"Filtering {name} dataset")
    if len(prepared) == 0:
        raise ValueError(f"the {name} dataset has no example of two or more tokens, so nothing to train or evaluate on")
    return prepared


def chunk_tokens(
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    *,
    chunk_length: int = 100,
    text_field: str = "text",
) -> Dataset:
    """Cut every document into consecutive ``chunk_length``-token pieces, dropping the shorter tail.

    Fixed-length chunks (100 tokens in the MUDMAN paper) make every example weigh the same and need
    no padding. No special tokens are added: a chunk is a window into running text.
    """
    if chunk_length < 2:
        raise ValueError(f"chunk_length must be at least 2, got {chunk_length}")
    if text_field not in dataset.column_names:
        raise _text_column_error(dataset, "source", text_field)
    check_text_rows(dataset, text_field, "source")

    def chunk(batch: dict) -> dict:
        ids = tokenizer(batch[text_field], add_special_tokens=False)["input_ids"]
        chunks = [doc[i : i + chunk_length] for doc in ids for i in range(0, len(doc) - chunk_length + 1, chunk_length)]
        return {"input_ids": chunks}

    return dataset.map(chunk, batched=True, remove_columns=dataset.column_names, desc="Chunking")


def split_dataset(
    dataset: Dataset,
    names: Sequence[str] = ("unlearn", "attack", "eval"),
    fractions: Sequence[float] = (0.5, 0.25, 0.25),
    seed: int = 42,
) -> DatasetDict:
    """Shuffle with ``seed`` and cut into disjoint named parts (the paper's 50/25/25 unlearn/attack/eval)."""
    if len(names) != len(fractions) or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions {tuple(fractions)} must be positive, one per name {tuple(names)}, summing to 1")
    shuffled = dataset.shuffle(seed=seed)
    bounds = [0]
    for fraction in fractions[:-1]:
        bounds.append(bounds[-1] + int(fraction * len(dataset)))
    bounds.append(len(dataset))
    parts = DatasetDict({n: shuffled.select(range(lo, hi)) for n, lo, hi in zip(names, bounds, bounds[1:])})
    empty = [n for n, part in parts.items() if len(part) == 0]
    if empty:
        raise ValueError(f"splitting {len(dataset)} examples {tuple(fractions)} leaves {empty} empty; use more data")
    return parts


def prepare_eval_datasets(
    eval_dataset: Dataset | dict[str, Dataset] | None,
    tokenizer: PreTrainedTokenizerBase | None,
    *,
    text_field: str = "text",
    max_length: int | None = None,
) -> Dataset | dict[str, Dataset] | None:
    """``prepare_lm_dataset`` for one eval dataset or each of a dict of them (``{"forget": ..., "retain": ...}``)."""
    if eval_dataset is None:
        return None
    if isinstance(eval_dataset, dict):
        return {
            key: prepare_lm_dataset(ds, tokenizer, name=f"{key} eval", text_field=text_field, max_length=max_length)
            for key, ds in eval_dataset.items()
        }
    return prepare_lm_dataset(eval_dataset, tokenizer, name="eval", text_field=text_field, max_length=max_length)


def unlearning_splits(
    forget_text: Dataset,
    retain_text: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    *,
    chunk_length: int = 100,
    text_field: str = "text",
    seed: int = 42,
) -> DatasetDict:
    """The robustness protocol's splits (docs/design.md §6) from two text datasets, as fixed-length chunks.

    Forget *documents* (rows: files, articles) are split 50/25/25 into ``forget_unlearn`` (what the
    method sees), ``forget_attack`` (what the relearning attack fine-tunes on) and ``forget_eval``
    (held out, where recovery is measured), and only then cut into chunks: chunks of one document
    never land in two splits, so the held-out loss is measured on text nothing trained on. Retain
    documents are split 75/25 into ``retain_train`` and ``retain_eval`` the same way. Deterministic
    in ``seed``, so unlearning and attack scripts rebuild identical splits.
    """
    parts = {
        **{f"forget_{n}": d for n, d in split_dataset(forget_text, seed=seed).items()},
        **{f"retain_{n}": d for n, d in split_dataset(retain_text, names=("train", "eval"), fractions=(0.75, 0.25), seed=seed).items()},
    }
    chunked = DatasetDict(
        {name: chunk_tokens(documents, tokenizer, chunk_length=chunk_length, text_field=text_field) for name, documents in parts.items()}
    )
    empty = [name for name, part in chunked.items() if len(part) == 0]
    if empty:
        raise ValueError(
            f"{empty} hold no {chunk_length}-token chunk: their documents are shorter than chunk_length; "
            "use more or longer documents, or a smaller chunk_length"
        )
    return DatasetDict({name: part.shuffle(seed=seed) for name, part in chunked.items()})
