"""Data sources that exist on every machine with Python, for demos, tests and benchmarks offline.

- ``python_stdlib_source``: Python source of the standard library, a code forget set like the
  MUDMAN paper's Python experiment.
- ``pydoc_prose``: the English prose of the standard library's ``pydoc_data`` help topics (code
  examples removed, so the retain set does not overlap the code forget set), a retain set.
"""

from __future__ import annotations

import re
import sysconfig
from pathlib import Path

from datasets import Dataset

# Folders of the standard library that are tests, vendored tools or platform config, not library code.
_SKIPPED_DIRS = {
    "site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__", "lib2to3", "idlelib",
    "ensurepip", "turtledemo", "tkinter", "unittest",
}  # fmt: skip
_HEADING_UNDERLINE = re.compile(r"^[*=\-~^]{3,}$")


def stdlib_source_files() -> list[Path]:
    """Library ``.py`` files of this interpreter's standard library, in sorted (deterministic) order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [
        path
        for path in root.rglob("*.py")
        if not _SKIPPED_DIRS.intersection(path.relative_to(root).parts[:-1])
        and not path.relative_to(root).parts[0].startswith("config-")
    ]
    return sorted(files)


def python_stdlib_source() -> Dataset:
    """One row per standard-library module: columns ``text`` (the source) and ``path``."""
    files = stdlib_source_files()
    if not files:
        raise FileNotFoundError(f"no Python source found under {sysconfig.get_paths()['stdlib']}")
    root = Path(sysconfig.get_paths()["stdlib"])
    return Dataset.from_dict(
        {
            "text": [path.read_text(encoding="utf-8", errors="replace") for path in files],
            "path": [str(path.relative_to(root)) for path in files],
        }
    )


def _prose_paragraphs(topic_text: str) -> list[str]:
    """Unindented paragraphs of a reST help topic: indented blocks are code, grammar or tables."""
    paragraphs, current = [], []
    for line in topic_text.splitlines() + [""]:
        if line.strip() and not line.startswith((" ", "\t")) and not _HEADING_UNDERLINE.match(line.strip()):
            current.append(line.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    return paragraphs


def pydoc_prose() -> Dataset:
    """One row per ``pydoc_data`` help topic: columns ``text`` (its prose paragraphs) and ``topic``."""
    from pydoc_data.topics import topics

    rows = {"text": [], "topic": []}
    for name in sorted(topics):
        text = "\n\n".join(p for p in _prose_paragraphs(topics[name]) if len(p.split()) >= 8)
        if text:
            rows["text"].append(text)
            rows["topic"].append(name)
    return Dataset.from_dict(rows)
