"""The runtime works where torch is not installed at all (what goes on the vehicle)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# Runs in a fresh interpreter: sys.modules["torch"] = None makes every "import torch" fail
# with ImportError, exactly as in an environment without torch.
_SEGMENT = textwrap.dedent("""
    import sys, json
    sys.modules["torch"] = None
    import numpy as np
    import edgeseg.runtime
    from edgeseg.runtime import Segmenter
    seg = Segmenter(sys.argv[1], threads=1)
    res = seg(np.full((90, 160, 3), 127, np.uint8))
    out = res.overlay(0.5)
    print(json.dumps({"shape": list(res.class_map.shape), "overlay": list(out.shape),
                      "backend": seg.info["backend"]}))
""")

_IMPORTS = textwrap.dedent("""
    import sys, json, importlib, argparse
    import edgeseg, edgeseg.runtime, edgeseg.cli
    from edgeseg.runtime import segmenter, preprocess, visualize, zoo
    from edgeseg.runtime.backends import ort
    mods = {}
    for name in ("info_cmd", "bench_cmd"):
        try:
            m = importlib.import_module("edgeseg.cli." + name)
            m.add_arguments(argparse.ArgumentParser())
            mods[name] = True
        except ModuleNotFoundError as e:
            mods[name] = str(e)
    print(json.dumps({"torch": "torch" in sys.modules, "training": sorted(
        m for m in sys.modules if m.startswith(("edgeseg.train", "edgeseg.models"))), "mods": mods}))
""")


def _run(code: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_segmenter_runs_with_torch_blocked(tiny_onnx):
    out = _run(_SEGMENT, str(tiny_onnx))
    assert out == {"shape": [90, 160], "overlay": [90, 160, 3], "backend": "onnxruntime"}


def test_runtime_and_its_commands_do_not_import_torch():
    out = _run(_IMPORTS)
    assert out["torch"] is False, "importing the runtime pulled torch into sys.modules"
    assert out["training"] == []
    assert out["mods"] == {"info_cmd": True, "bench_cmd": True}
