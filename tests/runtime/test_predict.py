"""edgeseg predict: one output frame per input frame, names kept, finalised video on SIGTERM."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from testkit.video import count_frames, make_video, run_until_writing_then_signal

from edgeseg.cli import main
from edgeseg.runtime.mjpeg import MjpegServer


def test_video_in_video_out_one_frame_per_frame(tiny_onnx: Path, tmp_path: Path, capsys) -> None:
    make_video(tmp_path / "in.mp4", 17)
    rc = main(["predict", str(tiny_onnx), "--source", str(tmp_path / "in.mp4"), "--save", str(tmp_path / "res"),
               "--json", str(tmp_path / "r.json")])
    assert rc == 0
    out = tmp_path / "res" / "in.mp4"  # a folder --save gets <input name>.mp4
    n, fps = count_frames(out)
    assert n == 17 and fps == pytest.approx(12.0)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["frames"] == 17 and report["drops"] == 0 and report["stopped_by"] == "eos"
    assert report["latency_ms"]["infer"]["n"] == 17 and report["backend"] == "onnxruntime"
    assert "17 frames" in capsys.readouterr().out


def test_images_in_images_out_same_names(tiny_onnx: Path, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    for name in ("z.png", "a.jpg", "m.png"):
        cv2.imwrite(str(tmp_path / "in" / name), np.full((30, 40, 3), 90, np.uint8))
    rc = main(["predict", str(tiny_onnx), "--source", str(tmp_path / "in"), "--save", str(tmp_path / "out"),
               "--visualize", "side"])
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg", "m.png", "z.png"]
    assert cv2.imread(str(tmp_path / "out" / "m.png")).shape == (30, 80, 3)  # side: frame | mask


def test_workers_give_the_same_images_as_one_worker(tiny_onnx: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    (tmp_path / "in").mkdir()
    for i in range(9):
        cv2.imwrite(str(tmp_path / "in" / f"f{i}.png"), rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    for workers in ("1", "2"):
        assert main(["predict", str(tiny_onnx), "--source", str(tmp_path / "in"), "--save", str(tmp_path / workers),
                     "--visualize", "mask", "--threads", "1", "--workers", workers]) == 0
    for i in range(9):  # PNG is lossless: the same masks, under the same names
        assert np.array_equal(cv2.imread(str(tmp_path / "1" / f"f{i}.png")), cv2.imread(str(tmp_path / "2" / f"f{i}.png")))


def test_workers_refused_up_front_for_a_one_at_a_time_backend(tiny_onnx: Path, tmp_path: Path, capsys,
                                                              monkeypatch) -> None:
    from edgeseg.runtime.backends.ort import OnnxRuntimeBackend

    monkeypatch.setattr(OnnxRuntimeBackend, "concurrent_runs", False)  # as TensorRT and PyTorch say
    make_video(tmp_path / "v.mp4", 2)
    assert main(["predict", str(tiny_onnx), "--source", str(tmp_path / "v.mp4"), "--save", str(tmp_path / "o.mp4"),
                 "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--workers 2 needs a backend" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o.mp4").exists()  # refused before any output was created


@pytest.mark.parametrize("images, concurrent, planned", [
    (3, True, (2, 1)),  # a folder on 2 cores: 2 one-thread inferences side by side
    (1, True, (1, None)),  # one image: its one inference gets the backend's default threads
    (3, False, (1, None)),  # a backend that runs one at a time: auto falls back instead of refusing
])
def test_workers_auto_is_the_default(tiny_onnx: Path, tmp_path: Path, capsys, monkeypatch, images: int,
                                     concurrent: bool, planned: tuple) -> None:
    from edgeseg.runtime import sources
    from edgeseg.runtime.backends.ort import OnnxRuntimeBackend

    monkeypatch.setattr(sources, "available_cpus", lambda: 2)
    monkeypatch.setattr(OnnxRuntimeBackend, "concurrent_runs", concurrent)
    (tmp_path / "in").mkdir()
    for i in range(images):
        cv2.imwrite(str(tmp_path / "in" / f"f{i}.png"), np.full((30, 40, 3), 40 * i, np.uint8))
    assert main(["predict", str(tiny_onnx), "--source", str(tmp_path / "in"), "--save", str(tmp_path / "out"),
                 "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["workers"], report["threads"]) == planned and report["frames"] == images
    assert f"{planned[0]} inference worker" in capsys.readouterr().out


def test_single_image_to_image_file(tiny_onnx: Path, tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "one.png"), np.full((30, 40, 3), 200, np.uint8))
    assert main(["predict", str(tiny_onnx), "--source", str(tmp_path / "one.png"),
                 "--save", str(tmp_path / "seg.png"), "--visualize", "mask"]) == 0
    assert cv2.imread(str(tmp_path / "seg.png")).shape == (30, 40, 3)


def test_live_source_is_refused_with_a_pointer_to_demo(tiny_onnx: Path, capsys) -> None:
    with MjpegServer(port=0) as srv:
        srv.play([np.zeros((32, 32, 3), np.uint8)] * 3, fps=30)
        rc = main(["predict", str(tiny_onnx), "--source", srv.url])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "live source" in err and "edgeseg demo" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("argv_tail, code, words", [
    (["--source", "/no/such.mp4"], 1, "does not exist"),
    (["--source", "smb://x/y"], 2, "unsupported source scheme"),
    (["--source", "{video}", "--alpha", "2"], 2, "--alpha 2.0 must be a number between 0 and 1"),
    (["--source", "{video}", "--save", "{tmp}/o.txt"], 2, "unknown suffix"),
    (["--source", "{video}", "--workers", "0"], 2, "--workers 0 must be at least 1"),
    (["--source", "{video}", "--max-frames", "0"], 2, "--max-frames 0 must be at least 1"),
    (["--source", "{video}", "--save", "{video}"], 2, "--save would overwrite the input"),
    (["--source", "{video}", "--save", "{tmp}/one.png"], 2, "is a single image but the source has 2 frames"),
])
def test_bad_input_one_line(tiny_onnx: Path, tmp_path: Path, capsys, argv_tail: list[str], code: int,
                            words: str) -> None:
    make_video(tmp_path / "v.mp4", 2)
    tail = [a.format(video=tmp_path / "v.mp4", tmp=tmp_path) for a in argv_tail]
    assert main(["predict", str(tiny_onnx), *tail]) == code
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_workers_must_be_a_number_or_auto(capsys) -> None:
    with pytest.raises(SystemExit) as e:  # argparse's own usage error
        main(["predict", "--source", "x.mp4", "--workers", "two"])
    assert e.value.code == 2
    assert "--workers: 'two' is neither a whole number nor 'auto'" in capsys.readouterr().err


def test_outputs_never_overwrite_inputs_or_each_other(tiny_onnx: Path, tmp_path: Path, capsys) -> None:
    for sub in ("in", "a", "b"):
        (tmp_path / sub).mkdir()
        cv2.imwrite(str(tmp_path / sub / "f.png"), np.full((20, 30, 3), 50, np.uint8))
    before = (tmp_path / "in" / "f.png").read_bytes()
    assert main(["predict", str(tiny_onnx), "--source", str(tmp_path / "in"), "--save", str(tmp_path / "in")]) == 2
    assert "--save would overwrite the input" in capsys.readouterr().err
    assert (tmp_path / "in" / "f.png").read_bytes() == before
    glob = str(tmp_path / "[ab]" / "f.png")  # two inputs named f.png: one output would replace the other
    assert main(["predict", str(tiny_onnx), "--source", glob, "--save", str(tmp_path / "out")]) == 2
    assert "would both be written as f.png" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert main(["predict", str(tiny_onnx), "--source", glob, "--save", str(tmp_path / "both.mp4")]) == 0  # a video is fine


def test_grey_only_inputs_are_written_as_png(tiny_onnx: Path, tmp_path: Path, capsys) -> None:
    """A rendered frame is colour, which .pgm cannot hold."""
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "g.pgm"), np.full((20, 30), 90, np.uint8))
    cv2.imwrite(str(tmp_path / "in" / "c.png"), np.full((20, 30, 3), 90, np.uint8))
    assert main(["predict", str(tiny_onnx), "--source", str(tmp_path / "in"), "--save", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["c.png", "g.png"]
    assert cv2.imread(str(tmp_path / "out" / "g.png")).shape == (20, 30, 3)
    cv2.imwrite(str(tmp_path / "in" / "g.png"), np.full((20, 30, 3), 90, np.uint8))  # now g.pgm's output name
    assert main(["predict", str(tiny_onnx), "--source", str(tmp_path / "in"), "--save", str(tmp_path / "out2")]) == 2
    assert "would both be written as g.png" in capsys.readouterr().err


def test_default_output_of_a_glob_is_named_after_its_folder(tiny_onnx: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "frames").mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / "frames" / name), np.full((20, 30, 3), 50, np.uint8))
    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(tiny_onnx), "--source", "frames/*.png"]) == 0
    assert sorted(p.name for p in (tmp_path / "runs" / "predict" / "frames").iterdir()) == ["a.png", "b.png"]


def test_no_readable_frame_is_an_error_not_an_empty_success(tiny_onnx: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "zero.png").write_bytes(b"")
    assert main(["predict", str(tiny_onnx), "--source", str(tmp_path / "zero.png"),
                 "--save", str(tmp_path / "z.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()  # the progress bar's last line, then the error
    assert err[-1].startswith("error: no frame of")
    assert err[-1].endswith(f"(1 unreadable, e.g. {tmp_path / 'zero.png'}); nothing was written")
    assert not any("Traceback" in line for line in err)
    assert not (tmp_path / "z.png").exists()


def test_unreadable_images_are_named_in_the_summary_and_report(tiny_onnx: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), np.full((20, 30, 3), 50, np.uint8))
    (tmp_path / "in" / "b.png").write_bytes(b"truncated")
    assert main(["predict", str(tiny_onnx), "--source", str(tmp_path / "in"), "--save", str(tmp_path / "out"),
                 "--json", str(tmp_path / "r.json")]) == 0
    assert f"skipped 1 unreadable image: {tmp_path / 'in' / 'b.png'}" in capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["corrupt"] == 1 and report["unreadable"] == [str(tmp_path / "in" / "b.png")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]


def test_missing_model_is_one_line(tmp_path: Path, capsys) -> None:
    make_video(tmp_path / "v.mp4", 2)
    assert main(["predict", str(tmp_path / "nope.onnx"), "--source", str(tmp_path / "v.mp4")]) == 1
    err = capsys.readouterr().err.strip()
    assert "nope.onnx does not exist" in err and len(err.splitlines()) == 1





def test_sigterm_leaves_a_finalised_playable_video(tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "synthetic.mp4"
    cmd = [sys.executable, "-m", "edgeseg", "predict", str(tiny_onnx),
           "--source", "synthetic://?size=48x64&frames=100000", "--save", str(out), "--json", str(tmp_path / "r.json")]
    res = run_until_writing_then_signal(cmd, out)
    assert res.returncode == 128 + signal.SIGTERM, res.stderr
    assert "stopped by SIGTERM" in res.stderr
    n, _ = count_frames(out)
    report = json.loads((tmp_path / "r.json").read_text())
    assert n == report["frames"] > 0 and report["stopped_by"] == "SIGTERM"  # as the console says
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind
