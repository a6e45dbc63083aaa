"""edgeseg's TensorRT code and its test fakes against the names in TensorRT's real Python bindings.

TensorRT cannot run here, but its compiled bindings (``tensorrt-cu12-bindings`` wheels, ~1.3 MB)
can be downloaded: their extension module's string table holds every class, method, property and
enum member name pybind11 registers. The names edgeseg uses are collected by walking the source
(attribute accesses on the ``tensorrt`` module and on objects it returns), not from a hand-kept
list, so a new call is checked the day it is written, and so are the fakes the other tests run on.

What this proves: each name exists somewhere in that release's bindings. It cannot tell which
class a name belongs to (``INT8`` exists as ``DataType.INT8`` whether or not ``BuilderFlag.INT8``
does), and it does not make the TensorRT path run: that still needs a GPU.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tempfile
import zipfile
from functools import cache
from pathlib import Path

import pytest

from edgeseg.export.engine_plan import capabilities, plan_build
from edgeseg.runtime.errors import ExportError

REPO = Path(__file__).resolve().parents[2]
RELEASES = ("10.13.3.9", "11.4.0.106")
CACHE = Path(tempfile.gettempdir()) / "edgeseg-trt-bindings"
TRT_CODE = ("export/engine.py", "export/engine_plan.py", "export/trt_calibrator.py", "runtime/backends/trt.py")
FAKE_FILES = ("tests/runtime/test_trt_backend.py", "tests/export/test_engine.py", "tests/export/test_engine_plan.py")
# Branches on these decide the TensorRT 10 / 11 path (engine_plan.TrtCapabilities).
CAPABILITY_FLAGS = {"legacy_calibrator", "precision_flags", "explicit_batch_flag", "strongly_typed_only"}
OWN_METHODS = {"free"}  # the calibrator subclass's own clean-up, called by edgeseg, not by TensorRT
FAKE_BOOKKEEPING = {"calls"}  # the fakes' call log
DOWNLOAD_TIMEOUT_S = 120


# -- the bindings' names ----------------------------------------------------------------------------
def _wheel(version: str) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    found = sorted(CACHE.glob(f"tensorrt_cu12_bindings-{version}-*.whl"))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
           "--platform", "manylinux_2_28_x86_64", "-d", str(CACHE), f"tensorrt-cu12-bindings=={version}"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot download tensorrt-cu12-bindings=={version}: {e}")
    found = sorted(CACHE.glob(f"tensorrt_cu12_bindings-{version}-*.whl"))
    if done.returncode or not found:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"cannot download tensorrt-cu12-bindings=={version} (offline or not on the index): {last}")
    return found[0]


class Bindings:
    """The names one bindings release defines: printable runs of its ``tensorrt*.so`` (like
    ``strings``) plus what the package's ``__init__.py`` defines (``__version__``, ``nptype``)."""

    def __init__(self, version: str) -> None:
        self.version = version
        with zipfile.ZipFile(_wheel(version)) as whl:
            so = next(n for n in whl.namelist() if re.fullmatch(r"tensorrt_bindings/tensorrt[^/]*\.so", n))
            data = whl.read(so)
            init = ast.parse(whl.read("tensorrt_bindings/__init__.py"))
        self.runs = {m.group().decode("ascii") for m in re.finditer(rb"[\x20-\x7e]{2,}", data)}
        # what the package's __init__.py defines beside the extension module (__version__, nptype, ...)
        self.py_names = {n.name for n in init.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        self.py_names |= {t.id for n in init.body if isinstance(n, ast.Assign) for t in n.targets
                          if isinstance(t, ast.Name)}
        # The linker stores a name that ends another name as that one's tail ("Logger" in "ILogger",
        # "INT8" in "UINT8"). Only whole-identifier strings count: a docstring ending in "+ FP16" does not.
        self.tails = {r[i:] for r in self.runs if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", r) for i in range(len(r))}

    def has(self, name: str) -> bool:
        return name in self.runs or name in self.py_names or name in self.tails


@cache
def bindings(version: str) -> Bindings:
    return Bindings(version)


@pytest.fixture(scope="module")
def trt10() -> Bindings:
    return bindings(RELEASES[0])


@pytest.fixture(scope="module")
def trt11() -> Bindings:
    return bindings(RELEASES[1])


# -- the names edgeseg uses ---------------------------------------------------------------------------
def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


class TrtUses:
    """Attribute names a file reads from TensorRT objects: the module (``trt``, ``self.trt``), and
    anything assigned from it, a call on it, or an attribute of it (to a fixed point)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tree = ast.parse(path.read_text(), str(path))
        self.trt = {"trt", "tensorrt", "self.trt"}
        for _ in range(10):  # assignments can chain: runtime -> engine -> context
            before = len(self.trt)
            for node in ast.walk(self.tree):
                if isinstance(node, ast.Assign) and self.rooted(node.value):
                    self.trt |= {d for d in map(_dotted, node.targets) if d}
            if len(self.trt) == before:
                break

    def rooted(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id == "getattr" and node.args:
                return self.rooted(node.args[0])
            return self.rooted(node.func)
        if isinstance(node, ast.Attribute):
            return _dotted(node) in self.trt or self.rooted(node.value)
        if isinstance(node, ast.Name):
            return node.id in self.trt
        return False

    def uses(self) -> dict[str, list[ast.AST]]:
        """name -> the nodes that use it."""
        found: dict[str, list[ast.AST]] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Attribute) and self.rooted(node.value):
                found.setdefault(node.attr, []).append(node)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr",
                  "hasattr") and len(node.args) >= 2 and self.rooted(node.args[0])
                  and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
                found.setdefault(node.args[1].value, []).append(node)
            elif isinstance(node, ast.ClassDef) and any(self.rooted(b) for b in node.bases):
                for item in node.body:  # methods TensorRT calls on a subclass (the calibrator)
                    if isinstance(item, ast.FunctionDef) and item.name not in OWN_METHODS:
                        found.setdefault(item.name, []).append(item)
        if self.path.name == "engine_plan.py":  # enum member names the plan hands to getattr(trt.X, name)
            for node in ast.walk(self.tree):
                if isinstance(node, ast.Tuple):
                    for elt in node.elts:
                        if isinstance(elt, ast.Constant) and isinstance(elt.value, str) and \
                                re.fullmatch(r"[A-Z][A-Z0-9_]{2,}", elt.value):
                            found.setdefault(elt.value, []).append(elt)
        return {k: v for k, v in found.items() if not (k.startswith("__") and k != "__version__")}


def fake_uses(path: Path, tree: ast.AST | None = None) -> dict[str, list[ast.AST]]:
    """Names a fake TensorRT module defines: ``trt.X = ...`` (with SimpleNamespace members), and the
    methods and class attributes of classes defined in the function that builds it."""
    found: dict[str, list[ast.AST]] = {}
    tree = tree or ast.parse(path.read_text(), str(path))
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef) or not re.search(r"ModuleType\(['\"]tensorrt['\"]\)", ast.unparse(fn)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    for t in (target.elts if isinstance(target, ast.Tuple) else [target]):
                        if isinstance(t, ast.Attribute) and _dotted(t.value) == "trt":
                            found.setdefault(t.attr, []).append(t)
                for call in ast.walk(node.value):
                    if isinstance(call, ast.Call) and _dotted(call.func) == "SimpleNamespace" and \
                            any(_dotted(t.value) == "trt" for t in node.targets if isinstance(t, ast.Attribute)):
                        for kw in call.keywords:
                            found.setdefault(kw.arg, []).append(kw)
            elif isinstance(node, ast.ClassDef):
                for item in ast.walk(node):
                    if isinstance(item, ast.FunctionDef) and not item.name.startswith("_"):
                        found.setdefault(item.name, []).append(item)
                    elif isinstance(item, ast.Assign) and item in node.body:
                        for t in item.targets:
                            for n in (t.elts if isinstance(t, ast.Tuple) else [t]):
                                if isinstance(n, ast.Name):
                                    found.setdefault(n.id, []).append(n)
    return {k: v for k, v in found.items() if k not in FAKE_BOOKKEEPING and not k.startswith("_")
            or k == "__version__"}


def code_uses() -> dict[str, dict[str, list[ast.AST]]]:
    return {f: TrtUses(REPO / f).uses() for f in TRT_CODE}


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _tolerant_getattr(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and _dotted(node.func) == "getattr" and len(node.args) == 3


def on_trt10_path(tree: ast.AST, node: ast.AST) -> bool:
    """A use only TensorRT <= 10 reaches, or one that copes with the name's absence: inside a function
    that, before it, tests a TensorRT capability or reads a TensorRT name with ``getattr(..., default)``;
    under ``if major <= 10`` (the fakes)."""
    parents = _parents(tree)
    up = node
    while up is not None:
        if _tolerant_getattr(up):
            return True
        if isinstance(up, (ast.If, ast.IfExp)) and "major" in ast.unparse(up.test):
            return True
        if isinstance(up, ast.FunctionDef) and up is not node:
            if any(n.lineno < node.lineno and ((isinstance(n, ast.Attribute) and n.attr in CAPABILITY_FLAGS)
                                              or _tolerant_getattr(n)) for n in ast.walk(up) if hasattr(n, "lineno")):
                return True
        up = parents.get(up)
    return False


# -- tests ------------------------------------------------------------------------------------------
def test_the_walk_finds_the_calls_edgeseg_makes() -> None:
    # The collector itself must see the API this project is built on (else the checks below are empty).
    uses = {name for per_file in code_uses().values() for name in per_file}
    assert {"Builder", "OnnxParser", "parse_from_file", "create_builder_config", "set_memory_pool_limit",
            "build_serialized_network", "deserialize_cuda_engine", "execute_async_v3", "set_input_shape",
            "IInt8EntropyCalibrator2", "get_batch", "set_calibration_profile", "STRONGLY_TYPED", "FP16"} <= uses
    fakes = {name for f in FAKE_FILES for name in fake_uses(REPO / f)}
    assert {"BuilderFlag", "create_network", "get_tensor_profile_shape", "WORKSPACE", "INPUT"} <= fakes


@pytest.mark.parametrize("where", ["code", "fakes"])
def test_every_name_exists_in_tensorrt_10(trt10: Bindings, where: str) -> None:
    files = TRT_CODE if where == "code" else FAKE_FILES
    uses = code_uses() if where == "code" else {f: fake_uses(REPO / f) for f in files}
    missing = sorted(f"{f}: {name}" for f, names in uses.items() for name in names if not trt10.has(name))
    assert not missing, f"not in TensorRT {trt10.version}'s bindings: {missing}"


@pytest.mark.parametrize("where", ["code", "fakes"])
def test_names_missing_from_tensorrt_11_are_used_only_on_the_10_path(trt10: Bindings, trt11: Bindings,
                                                                      where: str) -> None:
    files = TRT_CODE if where == "code" else FAKE_FILES
    unguarded = []
    gone = set()
    for f in files:
        path = REPO / f
        tree = ast.parse(path.read_text(), str(path))
        if where == "code":
            walk = TrtUses(path)
            tree, uses = walk.tree, walk.uses()
        else:
            uses = fake_uses(path, tree)
        for name, nodes in uses.items():
            if trt11.has(name):
                continue
            gone.add(name)
            unguarded += [f"{f}:{n.lineno}: {name}" for n in nodes if not on_trt10_path(tree, n)]
    assert not unguarded, f"absent from TensorRT {trt11.version} but used outside the TensorRT 10 path: {unguarded}"
    if where == "code":  # the known removals are among them (else the bindings or the walk changed)
        assert {"set_calibration_profile", "IInt8EntropyCalibrator2", "int8_calibrator", "FP16"} <= gone


@pytest.mark.parametrize("release", RELEASES)
def test_every_build_plan_names_flags_its_release_has(release: str) -> None:
    names = bindings(release)
    caps = capabilities(release)
    for precision in ("fp32", "fp16", "int8"):
        for onnx_precision in ("fp32", "fp16", "int8"):
            for calibration in (False, True):
                try:
                    plan = plan_build(precision, caps, onnx_precision, int8_target="tensorrt",
                                      calibration=calibration, onnx_name="m.onnx")
                except ExportError:
                    continue  # refused combinations name no flag
                flags = (*plan.network_flags, *plan.builder_flags)
                assert all(names.has(f) for f in flags), (release, precision, onnx_precision, flags)
                if plan.use_calibrator:
                    assert names.has("IInt8EntropyCalibrator2") and names.has("set_calibration_profile")


def test_the_string_table_reader_matches_strings(trt10: Bindings) -> None:
    # A known removal reads as absent in 11 and present in 10, through the same reader.
    assert trt10.has("set_calibration_profile") and not bindings(RELEASES[1]).has("set_calibration_profile")
    assert not trt10.has("no_such_tensorrt_method_xyz")
