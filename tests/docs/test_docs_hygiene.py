"""User-facing text stands on its own: no links to files outside the repository, no development diary,
no README command that needs data a fresh clone does not have."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "runtime" / "zoo").glob("*.md")),
         *sorted((REPO / "benchmarks").glob("*.py")), REPO / "pyproject.toml"]
FORBIDDEN = [r"\.\./shared", r"NOTES\.md", r"DESIGN\.md", r"DESIGN §", r"\bsession \d+", r"\bround \d+ of development"]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_no_reference_outside_the_repository_or_to_its_history(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for pattern in FORBIDDEN:
        m = re.search(pattern, text, flags=re.I)
        assert m is None, f"{page.name}: {text[max(0, m.start() - 60):m.end() + 60]!r}"


@functools.cache
def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_docs_links_and_anchors_resolve() -> None:
    pages = [REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "runtime" / "zoo").glob("*.md")]
    for page in pages:
        for target, anchor in re.findall(r"\]\(([^)#:]*)(?:#([^)]*))?\)", page.read_text(encoding="utf-8")):
            path = (page.parent / target) if target else page
            assert path.exists(), f"{page.name} links to missing {target}"
            if anchor and path.suffix == ".md":
                assert anchor in _anchors(path), f"{page.name} links to {target}#{anchor}, which has no such heading"


_DOC_REF = re.compile(r"\bdocs/([\w.-]+\.md)(?:#([\w-]+))?")  # a page of docs/, maybe with an anchor


def _sources() -> list[Path]:
    """The repository's .py and .md files (hidden folders such as .venv, and build outputs, pruned)."""
    skip = {"build", "dist", "runs", "node_modules", "__pycache__"}
    found = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in skip]
        found += [Path(root) / f for f in files if f.endswith((".py", ".md"))]
    return sorted(found)


def test_docs_references_in_code_and_text_resolve() -> None:
    """A docs page cited in a comment, a docstring or a page exists, and so does the heading its anchor names."""
    bad = []
    for src in _sources():
        for name, anchor in _DOC_REF.findall(src.read_text(encoding="utf-8")):
            page = REPO / "docs" / name
            if not page.is_file():
                bad.append(f"{src.relative_to(REPO)}: docs/{name} does not exist")
            elif anchor and anchor not in _anchors(page):
                bad.append(f"{src.relative_to(REPO)}: docs/{name} has no heading #{anchor}")
    assert not bad, "\n".join(bad)
