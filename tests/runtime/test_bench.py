"""``edgeseg bench``: interleaved rounds, breakdown, JSON, the pipeline comparison."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeseg.cli import main
from edgeseg.cli.bench_cmd import interleaved, model_row, summarize
from edgeseg.runtime import Segmenter
from edgeseg.runtime.errors import UsageError


class _Recorder:
    """Wraps a Segmenter and logs the order calls arrive in."""

    def __init__(self, seg, name, log):
        self.seg, self.name, self.log = seg, name, log

    def __call__(self, frame):
        self.log.append(self.name)
        return self.seg(frame)


def test_models_are_interleaved_in_rounds(tiny_onnx):
    seg = Segmenter(tiny_onnx)
    log: list[str] = []
    frame = np.zeros((54, 96, 3), np.uint8)
    samples = interleaved([_Recorder(seg, "A", log), _Recorder(seg, "B", log)], frame, runs=4, warmup=1, rounds=2)
    assert log == ["A", "B"] + ["A", "A", "B", "B"] * 2
    assert [len(s) for s in samples] == [4, 4]
    row = model_row(seg, samples[0], rounds=2)
    assert set(row["stage_p50_ms"]) == {"preprocess_ms", "infer_ms", "postprocess_ms", "overlay_ms", "total_ms"}
    assert len(row["round_infer_p50_ms"]) == 2 and row["infer_fps"] > 0 and 0 <= row["overhead_pct"] <= 100
    with pytest.raises(UsageError, match="--runs 0"):
        interleaved([seg], frame, runs=0, warmup=0, rounds=1)
    # runs that do not divide into the rounds: still exactly that many, spread over every round
    log.clear()
    samples = interleaved([_Recorder(seg, "A", log)], frame, runs=10, warmup=0, rounds=3)
    assert len(samples[0]) == 10 and [s["round"] for s in samples[0]] == [0] * 4 + [1] * 3 + [2] * 3
    assert len(model_row(seg, samples[0], rounds=3)["round_infer_p50_ms"]) == 3


def test_summarize_percentiles():
    s = summarize(list(range(1, 101)))
    assert s["p50"] == 50.5 and s["p99"] == pytest.approx(99.01) and s["mean"] == 50.5


def test_bench_command_side_by_side_json(make_tiny_onnx, tmp_path, capsys):
    a = make_tiny_onnx()
    b = make_tiny_onnx(input_layout="NHWC_BGR_U8", output_kind="class_map")
    out = tmp_path / "bench.json"
    rc = main(["bench", str(a.path), str(b.path), "--runs", "4", "--warmup", "1", "--rounds", "2",
               "--frame-size", "108x192", "--threads", "1", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert a.path.name in text and b.path.name in text and "pre+post %" in text
    d = json.loads(out.read_text())
    assert [m["layout"] for m in d["models"]] == ["NCHW_RGB_F32", "NHWC_BGR_U8"]
    assert all(m["runs"] == 4 and m["threads"] == 1 for m in d["models"])
    assert d["frame"]["size"] == [108, 192] and d["pipeline"] == []


@pytest.mark.parametrize("workers", [1, 2])
def test_bench_pipeline_on_a_video_file(tiny_onnx, tmp_path, capsys, workers):
    pytest.importorskip("edgeseg.runtime.pipeline")
    import cv2

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (96, 54))
    rng = np.random.default_rng(0)
    for _ in range(12):
        writer.write(rng.integers(0, 256, (54, 96, 3), dtype=np.uint8))
    writer.release()
    out = tmp_path / "bench.json"
    rc = main(["bench", str(tiny_onnx), "--runs", "2", "--warmup", "0", "--rounds", "1", "--source", str(video),
               "--frames", "10", "--workers", str(workers), "--json", str(out)])
    assert rc == 0
    pipe = json.loads(out.read_text())["pipeline"][0]
    assert pipe["frames"] == 10 and pipe["pipeline_fps"] > 0 and pipe["efficiency"] > 0
    assert pipe["workers"] == workers
    assert set(pipe["capture_to_render_ms"]) >= {"p50", "p90", "p99"}
    assert "pipeline on" in capsys.readouterr().out


def test_bench_bad_arguments(tiny_onnx, capsys):
    assert main(["bench", str(tiny_onnx), "--frames", "0"]) == 2
    assert "--frames 0" in capsys.readouterr().err
    assert main(["bench", str(tiny_onnx), "--workers", "0"]) == 2
    assert "--workers 0 must be at least 1" in capsys.readouterr().err
    assert main(["bench", str(tiny_onnx), "--frame-size", "huge"]) == 2
