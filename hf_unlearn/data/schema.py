"""Schema checks for dataset recipes: a wrong column, type or value is an error naming all three."""

from __future__ import annotations

from collections.abc import Callable

from datasets import ClassLabel, Dataset, Value

FeatureCheck = Callable[[object], bool]


def _value(*dtypes: str) -> FeatureCheck:
    return lambda feature: isinstance(feature, Value) and feature.dtype in dtypes


STRING = ("string", _value("string", "large_string"))
INT = ("int64", _value("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"))
BOOL = ("bool", _value("bool"))
CLASS_LABEL = ("ClassLabel", lambda feature: isinstance(feature, ClassLabel))
CLASS_LABEL_OR_INT = ("ClassLabel or int64", lambda feature: CLASS_LABEL[1](feature) or INT[1](feature))
STRING_LIST = (
    "list of strings",
    lambda feature: STRING[1](getattr(feature, "feature", None)) and not isinstance(feature, (Value, dict)),
)
STRUCT = ("struct", lambda feature: isinstance(feature, dict))


class DatasetSchemaError(ValueError):
    """A dataset does not have the schema its recipe expects."""

    def __init__(self, recipe: str, field: str, problem: str, expected: str):
        super().__init__(f"{recipe}: {field!r} {problem}. Expected schema: {expected}")
        self.recipe, self.field = recipe, field


def describe(columns: dict[str, tuple[str, FeatureCheck]]) -> str:
    return "{" + ", ".join(f"{name}: {kind}" for name, (kind, _) in columns.items()) + "}"


def check_columns(
    dataset: Dataset, recipe: str, columns: dict[str, tuple[str, FeatureCheck]], expected: str | None = None
) -> None:
    """Every column in ``columns`` exists with the right feature type, and the dataset is not empty."""
    expected = expected or describe(columns)
    for name, (kind, check) in columns.items():
        if name not in dataset.column_names:
            raise DatasetSchemaError(recipe, name, f"is missing (columns found: {dataset.column_names})", expected)
        if not check(dataset.features[name]):
            raise DatasetSchemaError(recipe, name, f"has type {dataset.features[name]}, not {kind}", expected)
    if len(dataset) == 0:
        raise DatasetSchemaError(recipe, "split", "is empty", expected)


def check_mcq_rows(dataset: Dataset, recipe: str, expected: str, num_choices: int | None = 4) -> None:
    """Each row has ``num_choices`` choices (any number >= 2 when None) and an answer index among them."""
    for row, (choices, answer) in enumerate(zip(dataset["choices"], dataset["answer"])):
        if (num_choices is not None and len(choices) != num_choices) or len(choices) < 2:
            raise DatasetSchemaError(recipe, "choices", f"has {len(choices)} entries in row {row}", expected)
        if not 0 <= answer < len(choices):
            raise DatasetSchemaError(
                recipe, "answer", f"is {answer} in row {row}, outside 0..{len(choices) - 1}", expected
            )
