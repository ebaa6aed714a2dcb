"""README's and docs/'s relative links lead somewhere: the file exists and, for a Markdown file, so does the heading
an anchor names (GitHub's anchors: lower case, punctuation dropped, spaces as hyphens, a repeated heading numbered)."""

import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def heading_anchors(path: Path) -> Iterator[str]:
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#+\s+(.+)$", without_code_blocks(path.read_text()), flags=re.M):
        anchor = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        seen[anchor] = seen.get(anchor, -1) + 1
        yield anchor if seen[anchor] == 0 else f"{anchor}-{seen[anchor]}"


def broken_links(document: Path) -> list[str]:
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", without_code_blocks(document.read_text())):
        if re.match(r"[a-z]+:", target):  # https://, mailto:
            continue
        file, _, anchor = target.partition("#")
        path = (document.parent / file).resolve() if file else document
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in set(heading_anchors(path)):
            broken.append(f"{target}: no such heading in {path.name}")
    return broken


def test_every_relative_link_of_readme_and_docs_leads_somewhere():
    assert {doc.name: broken for doc in DOCUMENTS if (broken := broken_links(doc))} == {}


def test_a_link_to_a_missing_heading_or_file_is_found(tmp_path):
    (tmp_path / "other.md").write_text("# Where the targets stand\n\n## A, b: c\n\n## A, b: c\n")
    document = tmp_path / "README.md"
    document.write_text("[ok](other.md#where-the-targets-stand) [ok](other.md#a-b-c-1) [bad](other.md#a-b-c-2) [bad](missing.md) "
                        "[ok](https://example.com) [ok](#x)\n\n# x\n\n```\n[not a link](nowhere.md)\n```\n")  # fmt: skip
    assert broken_links(document) == ["other.md#a-b-c-2: no such heading in other.md", "missing.md: no such file"]
