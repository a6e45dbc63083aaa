"""User-facing text stands on its own: no links to files outside the repository, no development diary,
no README command that needs data a fresh clone does not have."""

from __future__ import annotations

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
