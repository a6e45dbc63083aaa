"""benchmarks/report.py: registered benchmarks exist and emit --json; sections are replaced one by one."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_report", REPO / "benchmarks" / "report.py")
report = importlib.util.module_from_spec(_spec)
sys.modules["bench_report"] = report  # dataclasses look their module up there
_spec.loader.exec_module(report)  # type: ignore[union-attr]


def test_every_registered_benchmark_is_a_script_with_json_output() -> None:
    names = [b.name for b in report.BENCHMARKS]
    assert len(names) == len(set(names))
    for bench in report.BENCHMARKS:
        script = REPO / bench.command[0]
        assert script.is_file(), bench.name
        assert "{json}" in bench.command and "--json" in script.read_text(encoding="utf-8"), bench.name


def test_only_replaces_its_own_section_and_keeps_the_others() -> None:
    first, second = report.BENCHMARKS[0], report.BENCHMARKS[1]
    old = report.assemble("", {first.name: report.section(first, "python a.py", "old A", True, None),
                               second.name: report.section(second, "python b.py", "old B", True, None)})
    new = report.assemble(old, {second.name: report.section(second, "python b.py", "new B", False, None)})
    assert "old A" in new and "new B" in new and "old B" not in new
    assert new.index(f"## {first.name}") < new.index(f"## {second.name}")  # registry order
    assert "- machine: " in new and "- date: " in new and "`python b.py`" in new


def test_runtime_latency_table_from_json() -> None:
    row = {"model": "/x/m.int8.onnx", "precision": "int8", "input_size": [360, 480], "threads": 2,
           "stage_p50_ms": {"infer_ms": 10.0, "preprocess_ms": 1.0, "postprocess_ms": 0.5, "overlay_ms": 0.7,
                            "total_ms": 12.2},
           "infer_ms": {"p99": 14.0}, "frame_fps": 81.97}
    table = report.parse_runtime_latency({"frame": {"size": [540, 960], "kind": "procedural scene"},
                                          "models": [row]})
    assert "| m.int8.onnx | int8 | 360x480 | 2 | 10.00 | 14.00 | 1.50 | 0.70 | 12.20 | 81.97 |" in table
