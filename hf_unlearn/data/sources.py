"""Text sources by name, and the forget/retain data a recipe trains and evaluates on."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from datasets import Dataset, load_dataset
from transformers import PreTrainedTokenizerBase

from . import recipes
from .offline import pydoc_prose, python_stdlib_source
from .processing import split_dataset, unlearning_splits

# The prompt TOFU's questions are asked with when no chat template is used (evaluation/tofu.py asks them alike).
QA_TEMPLATE = "Question: {question}\nAnswer:"


def tofu_text(name: str, *, path: str = "locuslab/TOFU") -> Dataset:
    """A TOFU config as text to unlearn or retain: ``text`` is each question asked as ``QA_TEMPLATE`` and its answer."""
    dataset = recipes.tofu(name, path=path)
    return dataset.map(lambda question, answer: {"text": f"{QA_TEMPLATE.format(question=question)} {answer}"}, input_columns=["question", "answer"])


# Text sources by name: offline ones, then the Hub recipes (each also reads local copies, see recipes.py). A Hub
# source followed by @FOLDER reads a local copy laid out like its Hub repository: tofu_forget10@/data/TOFU.
TEXT_SOURCES: dict[str, Callable[..., Dataset]] = {
    "python_stdlib": python_stdlib_source,
    "pydoc_prose": pydoc_prose,
    "wikitext": recipes.wikitext,
    "wikitext2": partial(recipes.wikitext, "wikitext-2-raw-v1"),
    "pile_bio_forget": partial(recipes.pile_bio, True),
    "pile_bio_retain": partial(recipes.pile_bio, False),
    "code_search_net_python": recipes.code_search_net_python,
    **{f"wmdp_{name.replace('-', '_')}": partial(recipes.wmdp_corpus, name) for name in recipes.WMDP_CORPORA},
    **{f"tofu_{name}": partial(tofu_text, name) for name in recipes.TOFU_QA_CONFIGS},
    **{f"muse_{corpus}_{split}": partial(recipes.muse, corpus, "raw", split) for corpus in recipes.MUSE_CORPORA for split in recipes.MUSE_CONFIGS["raw"][0]},
}
OFFLINE_SOURCES = ("python_stdlib", "pydoc_prose")
# The Hub repository each Hub-backed source reads (for model cards' ``datasets``).
HUB_IDS: dict[str, str] = {
    "wikitext": "Salesforce/wikitext",
    "wikitext2": "Salesforce/wikitext",
    "pile_bio_forget": "lapisrocks/pile-bio",
    "pile_bio_retain": "lapisrocks/pile-bio",
    "code_search_net_python": "Nan-Do/code-search-net-python",
    "wmdp_bio_forget_corpus": recipes.BIO_FORGET_REPO,
    **{f"wmdp_{name.replace('-', '_')}": "cais/wmdp-corpora" for name in recipes.WMDP_CORPORA if name != "bio-forget-corpus"},
    **{f"tofu_{name}": "locuslab/TOFU" for name in recipes.TOFU_QA_CONFIGS},
    **{f"muse_{corpus}_{split}": repo for corpus, repo in recipes.MUSE_CORPORA.items() for split in recipes.MUSE_CONFIGS["raw"][0]},
}
FORGET_POOLS = ("all", "tuning", "test")
SAME_TEXT_FIX = "the retain step would train on forget text and disruption be measured on it; give other retain text (e.g. pydoc_prose)"


def load_text_source(name: str, split: str = "train") -> Dataset:
    """``name``: a source of ``TEXT_SOURCES`` (offline or a Hub recipe; ``SOURCE@FOLDER`` reads a Hub recipe's local
    copy), a local data file, or any Hub dataset id.

    A file that does not exist, is empty or cannot be parsed, and a name that is neither a source, a
    file nor a loadable Hub dataset, raise an error that says which and lists the built-in sources.
    """
    source, _, folder = name.partition("@")
    if folder and source in TEXT_SOURCES:
        if source in OFFLINE_SOURCES:
            raise ValueError(f"{source} is built in and reads no folder: drop @{folder}")
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"{folder} (after {source}@) is not a folder: give a local copy laid out like {HUB_IDS[source]}")
        return TEXT_SOURCES[source](path=folder)
    if name in TEXT_SOURCES:
        return TEXT_SOURCES[name]()
    if Path(name).suffix:
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"data file {name} does not exist")
        if path.stat().st_size == 0:
            raise ValueError(f"data file {name} is empty: it needs at least one row with a text column")
        try:
            return recipes.load_split(name, None, split, data_files=name)
        except Exception as error:
            cause = error.__cause__ or error
            raise ValueError(
                f"could not read data file {name} ({type(cause).__name__}: {cause}); a .jsonl file needs one JSON object "
                'per line, such as {"text": "..."}'
            ) from error
    close = difflib.get_close_matches(name, TEXT_SOURCES, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    if close and "/" not in name:  # a misspelled built-in source: say so now, not after the Hub's retries
        raise ValueError(f"{name!r} is not a built-in text source ({', '.join(TEXT_SOURCES)}), a local file, or a Hub dataset id.{hint}")
    try:
        return load_dataset(name, split=split)
    except Exception as error:
        raise ValueError(
            f"{name!r} is not a built-in text source ({', '.join(TEXT_SOURCES)}), a local file, or a Hub dataset that could "
            f"be loaded ({type(error).__name__}).{hint}"
        ) from error


@dataclass
class DataArguments:
    """Which forget and retain text to use and how to cut it (the recipes' data section)."""

    forget_source: str = field(
        default="python_stdlib",
        metadata={
            "help": f"Forget text: {', '.join(TEXT_SOURCES)}, a local .json/.jsonl/.csv/.parquet/.txt file, or a Hub "
            "dataset id. The first two are offline."
        },
    )
    retain_source: str = field(default="pydoc_prose", metadata={"help": "Retain text, same choices as forget_source."})
    source_split: str = field(default="train", metadata={"help": "Split read from file and Hub sources."})
    text_field: str = field(default="text", metadata={"help": "Text column of the sources."})
    max_forget_documents: int | None = field(
        default=None, metadata={"help": "Use a seeded random sample of this many forget documents."}
    )
    forget_pool: str = field(
        default="all",
        metadata={
            "help": "Which forget documents: 'all', or the disjoint halves 'tuning' (for sweeps) and 'test' (to report "
            "tuned settings on documents the tuning never saw)."
        },
    )
    chunk_length: int = field(default=100, metadata={"help": "Tokens per example; shorter tails are dropped."})
    split_seed: int = field(default=42, metadata={"help": "Seed of the document sample and the splits."})
    max_unlearn_examples: int | None = field(default=None, metadata={"help": "Cap on forget_unlearn chunks."})
    max_attack_examples: int | None = field(default=None, metadata={"help": "Cap on forget_attack chunks."})
    max_eval_examples: int | None = field(default=64, metadata={"help": "Cap on each held-out eval split."})

    def __post_init__(self):
        if self.forget_pool not in FORGET_POOLS:
            raise ValueError(f"forget_pool={self.forget_pool!r} is invalid: use one of {', '.join(FORGET_POOLS)}")
        forget, retain = Path(self.forget_source), Path(self.retain_source)
        if self.retain_source == self.forget_source or (forget.is_file() and retain.is_file() and forget.samefile(retain)):
            raise ValueError(f"retain_source={self.retain_source!r} is the forget source: {SAME_TEXT_FIX}")


def _load_source(field_name: str, name: str, split: str) -> Dataset:
    try:
        return load_text_source(name, split)
    except (ValueError, FileNotFoundError) as error:
        raise type(error)(f"{field_name}={name!r}: {error}") from error


def build_unlearning_data(args: DataArguments, tokenizer: PreTrainedTokenizerBase) -> dict:
    """``{"unlearn", "attack", "retain", "eval": {"forget", "retain"}}`` as fixed-length token chunks.

    Deterministic in ``args``: the unlearning and the attack script rebuild the same splits.
    """
    forget_text = _load_source("forget_source", args.forget_source, args.source_split)
    if args.forget_pool != "all":  # a fixed seed: the two pools never depend on split_seed
        halves = split_dataset(forget_text, ("tuning", "test"), (0.5, 0.5), seed=0)
        forget_text = halves[args.forget_pool]
    if args.max_forget_documents is not None:
        forget_text = forget_text.shuffle(seed=args.split_seed).select(range(min(args.max_forget_documents, len(forget_text))))
    retain_text = _load_source("retain_source", args.retain_source, args.source_split)
    splits = unlearning_splits(
        forget_text, retain_text, tokenizer, chunk_length=args.chunk_length, text_field=args.text_field, seed=args.split_seed
    )
    # Forget documents in the retain text (a copy of the forget file under another name, say); checked after the splits,
    # which name a missing text column.
    forget_documents = {text for text in forget_text[args.text_field] if text.strip()}
    shared = sum(text in forget_documents for text in retain_text[args.text_field])
    if shared:
        raise ValueError(f"retain_source={args.retain_source!r} holds {shared} documents of forget_source={args.forget_source!r}: {SAME_TEXT_FIX}")

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
