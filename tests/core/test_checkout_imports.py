"""Run from a source checkout with a regular (non-editable) install: the checkout's edgeseg/ comes
first on sys.path, and edgeseg.runtime / edgeseg.export must still resolve (to the checkout's folders)."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# -S: no site processing, so no editable-install finder; site-packages is added as a plain folder
# (what a regular `pip install .` leaves: numpy and friends, no mapping of the checkout).
_CODE = textwrap.dedent("""
    import importlib.util, json, sys
    sys.path.append(sys.argv[1])
    import edgeseg.runtime
    from edgeseg.runtime import Segmenter  # noqa: F401
    print(json.dumps({"edgeseg": edgeseg.__file__, "runtime": edgeseg.runtime.__file__,
                      "export": importlib.util.find_spec("edgeseg.export").origin}))
""")


def test_runtime_imports_from_the_checkout_root_without_an_editable_install() -> None:
    proc = subprocess.run([sys.executable, "-S", "-c", _CODE, sysconfig.get_paths()["purelib"]], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(found["edgeseg"]).parent == REPO / "edgeseg"
    assert Path(found["runtime"]) == REPO / "runtime" / "__init__.py"
    assert Path(found["export"]) == REPO / "export" / "__init__.py"
