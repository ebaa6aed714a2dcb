"""Dataset recipes: the Hub datasets unlearning papers use, loaded and checked against their schema.

Each recipe runs the real Hub code (``load_dataset("cais/wmdp", "wmdp-bio", split="test")``) where
a network exists, and takes local copies in the same schema just as well: ``path=`` a folder laid
out like the Hub repository (for example ``huggingface-cli download cais/wmdp --repo-type dataset
--local-dir wmdp``), or ``data_files=`` one or more parquet/json/jsonl/csv files. Either way the
same ``load_dataset`` call runs and the schema is checked: a missing or mistyped column, an answer
index out of range or an empty split raises ``DatasetSchemaError`` naming the recipe, the field and
the expected schema.

Text recipes return a ``text`` column (renamed from the source column when it differs), ready for
``chunk_tokens``; multiple-choice recipes return ``question``, ``choices`` and an int ``answer``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import datasets
from datasets import Dataset, Value, load_dataset

from .schema import (
    BOOL,
    CLASS_LABEL_OR_INT,
    INT,
    STRING,
    STRING_LIST,
    STRUCT,
    DatasetSchemaError,
    check_columns,
    check_mcq_rows,
    describe,
)

DataFiles = str | list[str] | dict[str, str | list[str]] | None
_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv", ".txt": "text"}


def _builder(data_files: DataFiles) -> str:
    first = data_files
    while isinstance(first, (list, dict)):
        first = next(iter(first.values() if isinstance(first, dict) else first))
    suffix = Path(first).suffix
    if suffix not in _BUILDERS:
        raise ValueError(f"cannot read {first}: data_files must end in one of {', '.join(_BUILDERS)}")
    return _BUILDERS[suffix]


def _local_cache_dir(folder: Path) -> str:
    """A cache folder specific to the files under ``folder`` (their names, sizes and times).

    ``datasets`` keys the cache of a local folder whose README declares ``configs`` by the file
    patterns only, so two different copies named alike would share one cache and the second load
    would silently return the first copy's data.
    """
    stats = sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file())
    digest = hashlib.sha256(repr(stats).encode()).hexdigest()[:16]
    return str(Path(datasets.config.HF_DATASETS_CACHE) / "hf_unlearn_local" / digest)


def load_split(
    path: str, config: str | None, split: str, data_files: DataFiles = None, *, recipe: str = "", expected: str = ""
) -> Dataset:
    """``load_dataset`` from the Hub id or local folder ``path``, or from ``data_files`` when given.

    A missing config or split, or an empty one, becomes a ``DatasetSchemaError`` naming ``recipe``.
    """
    try:
        if data_files is not None:
            split = split if isinstance(data_files, dict) else "train"  # a bare file list is one split
            return load_dataset(_builder(data_files), data_files=data_files, split=split)
        cache_dir = _local_cache_dir(Path(path)) if Path(path).is_dir() else None
        return load_dataset(path, config, split=split, cache_dir=cache_dir)
    except ValueError as error:
        message = str(error)
        if "corresponds to no data" in message:
            raise DatasetSchemaError(recipe or path, "split", f"{split!r} is empty", expected) from error
        if "BuilderConfig" in message or "Unknown split" in message or "Bad split" in message:
            raise DatasetSchemaError(recipe or path, "config/split", f"{config!r}/{split!r} not found ({message})", expected) from error
        raise


# --- multiple choice -----------------------------------------------------------------------------

WMDP_SUBSETS = ("bio", "cyber", "chem")
# The subject each subset's prompt names (lm-evaluation-harness, lm_eval/tasks/wmdp): MCQEvaluator(subject=...).
WMDP_PROMPT_SUBJECTS = {"bio": "biology", "cyber": "cybersecurity", "chem": "chemistry"}
MCQ_COLUMNS = {"question": STRING, "choices": STRING_LIST, "answer": INT}
MCQ_SCHEMA = "{question: string, choices: list of 4 strings, answer: int64 in 0..3}; one split named 'test'"


def wmdp(subset: str = "bio", *, path: str = "cais/wmdp", data_files: DataFiles = None) -> Dataset:
    """WMDP multiple-choice questions (``cais/wmdp``, configs ``wmdp-bio``/``wmdp-cyber``/``wmdp-chem``, split ``test``)."""
    if subset not in WMDP_SUBSETS:
        raise ValueError(f"wmdp subset must be one of {WMDP_SUBSETS}, got {subset!r}")
    recipe = f"wmdp({subset!r})"
    dataset = load_split(path, f"wmdp-{subset}", "test", data_files, recipe=recipe, expected=MCQ_SCHEMA)
    check_columns(dataset, recipe, MCQ_COLUMNS, MCQ_SCHEMA)
    check_mcq_rows(dataset, recipe, MCQ_SCHEMA)
    return dataset


MMLU_SCHEMA = "{question: string, subject: string, choices: list of 4 strings, answer: ClassLabel A-D}"


def mmlu(
    subjects: list[str] | None = None,
    exclude: list[str] | None = None,
    *,
    split: str = "test",
    path: str = "cais/mmlu",
    data_files: DataFiles = None,
) -> Dataset:
    """MMLU questions (``cais/mmlu``, config ``all``), optionally only ``subjects`` or without ``exclude``.

    MMLU's ``answer`` is a ``ClassLabel`` (A-D) where WMDP's is a plain int; it is cast to int64 so
    every multiple-choice dataset here looks the same downstream.
    """
    dataset = load_split(path, "all", split, data_files, recipe="mmlu", expected=MMLU_SCHEMA)
    columns = {"question": STRING, "subject": STRING, "choices": STRING_LIST, "answer": CLASS_LABEL_OR_INT}
    check_columns(dataset, "mmlu", columns, MMLU_SCHEMA)
    check_mcq_rows(dataset, "mmlu", MMLU_SCHEMA)
    available = set(dataset.unique("subject"))
    for name, chosen in (("subjects", subjects), ("exclude", exclude)):
        unknown = sorted(set(chosen or ()) - available)
        if unknown:
            raise ValueError(f"mmlu {name} {unknown} not found; subjects available: {', '.join(sorted(available))}")
    keep = (set(subjects) if subjects else available) - set(exclude or ())
    dataset = dataset.filter(lambda subject: subject in keep, input_columns="subject")
    if len(dataset) == 0:
        raise DatasetSchemaError("mmlu", "subject", "selection leaves no question", MMLU_SCHEMA)
    return dataset.cast_column("answer", Value("int64"))


# --- text ----------------------------------------------------------------------------------------

TEXT_SCHEMA = "{text: string}; one split named 'train'"
WMDP_CORPORA = ("bio-forget-corpus", "bio-retain-corpus", "cyber-forget-corpus", "cyber-retain-corpus")
BIO_FORGET_REPO = "cais/wmdp-bio-forget-corpus"


def wmdp_corpus(name: str, *, path: str = "cais/wmdp-corpora", data_files: DataFiles = None) -> Dataset:
    """The WMDP unlearning corpora (``cais/wmdp-corpora``, split ``train``, column ``text``).

    The bio forget corpus is gated in its own repository (``cais/wmdp-bio-forget-corpus``): with
    access granted and ``huggingface-cli login`` done it loads from there, else pass a local copy
    through ``data_files=``.
    """
    if name not in WMDP_CORPORA:
        raise ValueError(f"wmdp_corpus name must be one of {WMDP_CORPORA}, got {name!r}")
    recipe = f"wmdp_corpus({name!r})"
    if name == "bio-forget-corpus" and data_files is None:
        try:
            dataset = load_dataset(BIO_FORGET_REPO, split="train")
        except Exception as error:  # gated, not logged in, or offline: all need the same advice
            raise PermissionError(
                f"the WMDP bio forget corpus could not be loaded from {BIO_FORGET_REPO} ({type(error).__name__}: "
                f"{error}). It is gated: request access at https://huggingface.co/datasets/{BIO_FORGET_REPO} "
                "(the form is linked from https://huggingface.co/datasets/cais/wmdp-corpora), then run "
                "`huggingface-cli login`, or pass data_files= with a local copy that has a 'text' column."
            ) from error
    else:
        dataset = load_split(path, name, "train", data_files, recipe=recipe, expected=TEXT_SCHEMA)
    check_columns(dataset, recipe, {"text": STRING}, TEXT_SCHEMA)
    return dataset


PILE_BIO_COLUMNS = {"txt_chunk": STRING, "meta": STRUCT, "reasoning": STRING, "label": BOOL}
PILE_BIO_SCHEMA = "{txt_chunk: string, meta: {pile_set_name: string}, reasoning: string, label: bool}; split 'train'"


def pile_bio(forget: bool = True, *, path: str = "lapisrocks/pile-bio", data_files: DataFiles = None) -> Dataset:
    """Pile chunks labelled biology or not (``lapisrocks/pile-bio``): ``label=True`` is the forget part.

    The MUDMAN paper's Pile-Bio retain set is the ``label=False`` part: ``pile_bio(forget=False)``.
    ``txt_chunk`` is returned as ``text``.
    """
    dataset = load_split(path, None, "train", data_files, recipe="pile_bio", expected=PILE_BIO_SCHEMA)
    check_columns(dataset, "pile_bio", PILE_BIO_COLUMNS, PILE_BIO_SCHEMA)
    dataset = dataset.filter(lambda label: label == forget, input_columns="label")
    if len(dataset) == 0:
        raise DatasetSchemaError("pile_bio", "label", f"has no row with label={forget}", PILE_BIO_SCHEMA)
    return dataset.rename_column("txt_chunk", "text")


def wikitext(
    name: str = "wikitext-103-raw-v1", *, split: str = "train", path: str = "Salesforce/wikitext", data_files: DataFiles = None
) -> Dataset:
    """WikiText paragraphs (``Salesforce/wikitext``), without its empty lines and ``= Heading =`` lines."""
    dataset = load_split(path, name, split, data_files, recipe="wikitext", expected="{text: string}")
    check_columns(dataset, "wikitext", {"text": STRING}, "{text: string}")

    def is_paragraph(text: str) -> bool:
        stripped = text.strip()
        return bool(stripped) and not (stripped.startswith("=") and stripped.endswith("="))

    dataset = dataset.filter(is_paragraph, input_columns="text")
    if len(dataset) == 0:
        raise DatasetSchemaError("wikitext", "text", "has no paragraph (only empty or heading lines)", "{text: string}")
    return dataset.map(lambda text: {"text": text.strip()}, input_columns="text")


CODE_SCHEMA = "{code: string, ...}; split 'train' (CodeSearchNet columns repo, path, func_name, code, docstring, ...)"


def code_search_net_python(*, path: str = "Nan-Do/code-search-net-python", data_files: DataFiles = None) -> Dataset:
    """Python functions from CodeSearchNet (``Nan-Do/code-search-net-python``); ``code`` is returned as ``text``."""
    dataset = load_split(path, None, "train", data_files, recipe="code_search_net_python", expected=CODE_SCHEMA)
    check_columns(dataset, "code_search_net_python", {"code": STRING}, CODE_SCHEMA)
    if "text" in dataset.column_names:
        dataset = dataset.remove_columns("text")
    return dataset.rename_column("code", "text")


# --- TOFU and MUSE -------------------------------------------------------------------------------

TOFU_QA_CONFIGS = ("full", "forget01", "forget05", "forget10", "retain90", "retain95", "retain99", "holdout01", "holdout05", "holdout10")
TOFU_PERTURBED_CONFIGS = ("forget01_perturbed", "forget05_perturbed", "forget10_perturbed", "retain_perturbed")
TOFU_OPTION_CONFIGS = ("real_authors_perturbed", "world_facts_perturbed")
TOFU_CONFIGS = TOFU_QA_CONFIGS + TOFU_PERTURBED_CONFIGS + TOFU_OPTION_CONFIGS
TOFU_QA_COLUMNS = {"question": STRING, "answer": STRING}
# The perturbed configs: the paraphrase and the wrong answers the truth ratio compares (real authors and world facts
# have no paraphrase: their answer is compared with the wrong ones directly).
TOFU_PERTURBED_COLUMNS = {**TOFU_QA_COLUMNS, "paraphrased_answer": STRING, "perturbed_answer": STRING_LIST}
TOFU_OPTION_COLUMNS = {**TOFU_QA_COLUMNS, "perturbed_answer": STRING_LIST}


def tofu_columns(name: str) -> dict:
    """The columns a TOFU config must have."""
    if name in TOFU_PERTURBED_CONFIGS:
        return TOFU_PERTURBED_COLUMNS
    return TOFU_OPTION_COLUMNS if name in TOFU_OPTION_CONFIGS else TOFU_QA_COLUMNS


def tofu(name: str = "forget10", *, path: str = "locuslab/TOFU", data_files: DataFiles = None) -> Dataset:
    """TOFU (Maini et al. 2024): questions about fictitious authors (``locuslab/TOFU``, one split, ``train``).

    ``full``, ``forgetNN``, ``retainNN`` and ``holdoutNN`` hold ``question`` and ``answer``; ``forgetNN_perturbed``
    and ``retain_perturbed`` add ``paraphrased_answer`` and ``perturbed_answer`` (a list), the truth ratio's
    inputs; ``real_authors_perturbed`` and ``world_facts_perturbed`` add ``perturbed_answer`` only.
    """
    if name not in TOFU_CONFIGS:
        raise ValueError(f"tofu name={name!r} is invalid: use one of {', '.join(TOFU_CONFIGS)}")
    recipe, columns = f"tofu({name!r})", tofu_columns(name)
    expected = describe(columns) + "; one split named 'train'"
    dataset = load_split(path, name, "train", data_files, recipe=recipe, expected=expected)
    check_columns(dataset, recipe, columns, expected)
    if "perturbed_answer" in columns and min(map(len, dataset["perturbed_answer"])) == 0:
        raise DatasetSchemaError(recipe, "perturbed_answer", "is an empty list in some row", expected)
    return dataset


MUSE_CORPORA = {"news": "muse-bench/MUSE-News", "books": "muse-bench/MUSE-Books"}
# Each config's splits and columns (the Hub repositories' layout).
MUSE_CONFIGS = {
    "raw": (("forget", "retain1", "retain2", "holdout"), {"text": STRING}),
    "verbmem": (("forget",), {"prompt": STRING, "gt": STRING}),
    "knowmem": (("forget_qa", "retain_qa", "forget_qa_icl", "retain_qa_icl"), {"question": STRING, "answer": STRING}),
    "privleak": (("forget", "retain", "holdout"), {"text": STRING}),
}


def muse(corpus: str = "news", name: str = "raw", split: str = "forget", *, path: str | None = None, data_files: DataFiles = None) -> Dataset:
    """MUSE (Shi et al. 2024): ``muse-bench/MUSE-News`` or ``MUSE-Books``, config ``name``, ``split``.

    ``raw`` (forget, retain1, retain2, holdout) and ``privleak`` (forget, retain, holdout) hold ``text``; ``verbmem``
    (forget) holds ``prompt`` and its true continuation ``gt``; ``knowmem`` (forget_qa, retain_qa and their
    in-context examples forget_qa_icl, retain_qa_icl) holds ``question`` and ``answer``.
    """
    if corpus not in MUSE_CORPORA:
        raise ValueError(f"muse corpus={corpus!r} is invalid: use one of {', '.join(MUSE_CORPORA)}")
    if name not in MUSE_CONFIGS:
        raise ValueError(f"muse name={name!r} is invalid: use one of {', '.join(MUSE_CONFIGS)}")
    splits, columns = MUSE_CONFIGS[name]
    if split not in splits:
        raise ValueError(f"muse split={split!r} is invalid for config {name!r}: use one of {', '.join(splits)}")
    recipe, expected = f"muse({corpus!r}, {name!r}, {split!r})", f"{describe(columns)}; splits {', '.join(splits)}"
    dataset = load_split(path or MUSE_CORPORA[corpus], name, split, data_files, recipe=recipe, expected=expected)
    check_columns(dataset, recipe, columns, expected)
    return dataset
