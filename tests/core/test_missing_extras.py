"""A command whose optional package is missing says which extra installs it, in one line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# sys.modules[name] = None makes "import name" fail as in an install without that package.
_RUN = textwrap.dedent("""
    import sys
    for name in sys.argv[1].split(","):
        sys.modules[name] = None
    from edgeseg.cli import main
    sys.exit(main(sys.argv[2:]))
""")


def _run(blocked: str, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _RUN, blocked, *argv], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


@pytest.mark.parametrize(("blocked", "argv", "extra"), [
    ("torch", ["train", "--model", "unet_lite", "--data", "synthetic://", "--out", "o"], "train"),
    ("torch", ["val", "best.pt"], "train"),
    ("torch", ["export", "best.pt"], "export"),
    ("onnx,onnxscript", ["export", "best.pt"], "export"),
    ("onnx,onnxscript", ["quickstart", "--minutes", "0.1"], "export"),
])
def test_missing_package_names_the_extra(tmp_path: Path, blocked: str, argv: list[str], extra: str) -> None:
    proc = _run(blocked, *argv, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr.strip()
    assert err.endswith(f"pip install 'edgeseg[{extra}]'") and len(err.splitlines()) == 1, err
    assert "unexpected" not in err


def test_models_without_torch_lists_the_bundled_models_and_names_the_extra(tmp_path: Path) -> None:
    proc = _run("torch", "models", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "camvid-unet-lite.int8" in proc.stdout and "pip install 'edgeseg[train]'" in proc.stdout
