"""Every python example in docs/api.md and the README runs as written against the bundled model
(except a block marked `<!-- not run: ... -->`, which needs files a fresh clone does not have)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = (REPO / "docs" / "api.md", REPO / "README.md")
_BLOCK = re.compile(r"(<!-- not run:[^>]*-->\n)?```python\n(.*?)```", re.S)


def _examples() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for m in _BLOCK.finditer(text):
            if m.group(1):
                continue
            line = text.count("\n", 0, m.start(2)) + 1
            found.append((f"{page.name}:{line}", m.group(2)))
    return found


def test_the_pages_have_examples() -> None:
    pages = {where.split(":")[0] for where, _ in _examples()}
    assert pages == {"api.md", "README.md"} and len(_examples()) >= 7


@pytest.mark.parametrize(("where", "code"), _examples(), ids=[w for w, _ in _examples()])
def test_api_example_runs(where: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, where, "exec"), {"__name__": "__docs__"})
