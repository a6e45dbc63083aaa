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


def test_docs_links_resolve() -> None:
    for page in [REPO / "README.md", *(REPO / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
