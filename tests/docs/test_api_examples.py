"""Every python example in docs/api.md runs as written against the bundled model (except a block
marked `<!-- not run: ... -->`, which needs files a fresh clone does not have)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
API = REPO / "docs" / "api.md"
_BLOCK = re.compile(r"(<!-- not run:[^>]*-->\n)?```python\n(.*?)```", re.S)


def _examples() -> list[tuple[str, str]]:
    text = API.read_text(encoding="utf-8")
    found = []
    for m in _BLOCK.finditer(text):
        if m.group(1):
            continue
        line = text.count("\n", 0, m.start(2)) + 1
        found.append((f"api.md:{line}", m.group(2)))
    return found


def test_the_page_has_examples() -> None:
    assert len(_examples()) >= 6


@pytest.mark.parametrize(("where", "code"), _examples(), ids=[w for w, _ in _examples()])
def test_api_example_runs(where: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, where, "exec"), {"__name__": "__docs__"})
