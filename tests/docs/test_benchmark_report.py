"""benchmarks/report.py: registered benchmarks exist and emit --json; sections are replaced one by one."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

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


SAMPLES = Path(__file__).parent / "data" / "benchmarks"  # --json outputs of quick runs (report.py --json-dir DIR)


def _sample(bench) -> dict:  # noqa: ANN001
    """NAME.json, or the sample of another benchmark running the same script."""
    for other in [bench, *(b for b in report.BENCHMARKS if b.command[0] == bench.command[0])]:
        if (SAMPLES / f"{other.name}.json").is_file():
            return json.loads((SAMPLES / f"{other.name}.json").read_text(encoding="utf-8"))
    raise AssertionError(f"add a --json sample of {bench.command[0]} as {SAMPLES.relative_to(REPO)}/{bench.name}.json")


@pytest.mark.parametrize("bench", report.BENCHMARKS, ids=[b.name for b in report.BENCHMARKS])
def test_parser_accepts_the_scripts_json(bench) -> None:  # noqa: ANN001
    data = _sample(bench)
    source = (REPO / bench.command[0]).read_text(encoding="utf-8")
    for key in data:  # the script still writes these keys
        assert f'"{key}"' in source, f"{bench.command[0]} no longer writes {key!r}; refresh its sample"
    table = bench.parse(data)
    assert table.count("\n|---") >= 1 and "| None |" not in table and "nan" not in table.lower(), table


def test_every_registered_benchmark_has_its_section_in_the_report() -> None:
    text = (REPO / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    missing = [b.name for b in report.BENCHMARKS if f"<!-- benchmark:{b.name} -->" not in text]
    assert not missing, f"run: python benchmarks/report.py --only {' --only '.join(missing)}"


def _ctx(tmp_path: Path, **kw) -> report.Context:  # noqa: ANN003
    base = {"json": str(tmp_path / "out.json"), "video": str(tmp_path / "clip.mp4"), "checkpoint": None,
            "has_torch": True, "work": str(tmp_path / "work")}
    return report.Context(**{**base, **kw})


def test_data_and_training_benchmarks_skip_without_their_options(tmp_path: Path) -> None:
    by_name = {b.name: b for b in report.BENCHMARKS}
    plain = _ctx(tmp_path)
    assert "--data" in by_name["confidence-shift"].skip(plain)
    for name in ("foreign-int8-accuracy", "camvid-cv"):
        assert "--with-training" in by_name[name].skip(_ctx(tmp_path, data="/d"))
        assert "--data" in by_name[name].skip(_ctx(tmp_path, with_training=True))
        assert by_name[name].skip(_ctx(tmp_path, data="/d", with_training=True)) is None
    shown, body = report.run_one(by_name["confidence-shift"], plain, quick=False)
    assert body.startswith("Not run: needs a labelled") and "--data CAMVID" in shown and str(tmp_path) not in shown


def test_commands_show_placeholders_not_local_paths(tmp_path: Path) -> None:
    bench = next(b for b in report.BENCHMARKS if b.name == "foreign-int8-accuracy")
    ctx = _ctx(tmp_path, data=str(tmp_path / "camvid"), video_shown="highway.mp4")
    shown, body = report.run_one(bench, ctx, quick=True)  # skipped: no --with-training
    assert body.startswith("Not run:")
    assert str(tmp_path) not in shown and shown.count("--data CAMVID") == 2 and "--out WORK" in shown
    assert shown.index(" train ") < shown.index(" evaluate ") and "--minutes 0.5" in shown


def test_openvino_section_without_a_dataset_says_there_is_no_accuracy_figure() -> None:
    data = _sample(next(b for b in report.BENCHMARKS if b.name == "openvino-vs-ort"))
    with_data = report.parse_openvino_vs_ort(data)
    assert "mIoU" in with_data and "| ONNX Runtime FP32 |" in with_data
    assert "output stride 2" in with_data and "End to end through `Segmenter`" in with_data
    for row in data["int8"].values():
        for key in ("fp32_miou", "int8_miou", "miou_drop"):
            row.pop(key, None)
    assert report.parse_openvino_vs_ort(data).count("no accuracy figure") == len(data["int8"])
