"""ROS 2 bags in MCAP: written with `mcap`, read back with `rosbags` (an independent MCAP reader
and CDR decoder); refusals; a run stopped by a signal leaves a readable bag."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mcap", reason="needs the ros extra: pip install 'edgeseg[ros]'")
pytest.importorskip("rosbags", reason="needs the ros extra: pip install 'edgeseg[ros]' (rosbags reads bags back)")

from mcap.exceptions import EndOfFile  # noqa: E402
from mcap.reader import make_reader  # noqa: E402
from mcap.records import Channel, Message  # noqa: E402
from mcap.stream_reader import StreamReader  # noqa: E402
from rosbags.highlevel import AnyReader  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

from edgeseg.runtime.bag_sink import CLASSES_TOPIC, RosBagSink  # noqa: E402
from edgeseg.runtime.errors import BackendUnavailableError, UsageError  # noqa: E402
from edgeseg.runtime.result_sinks import open_result_sink  # noqa: E402
from edgeseg.runtime.ros2_messages import split_stamp  # noqa: E402

T0 = 1_764_979_200.25
CLASSES = ["road", "car", "sky"]
PALETTE = [[128, 64, 128], [64, 0, 128], [128, 128, 128]]
SIZES = {"cam0": (48, 64), "rear": (30, 40)}


def ids_for(n: int, h: int, w: int) -> np.ndarray:
    return ((np.arange(h * w).reshape(h, w) // 7 + n) % 3).astype(np.uint8)  # (H, W) uint8


def frame_for(n: int, h: int, w: int) -> np.ndarray:
    return ((np.arange(h * w * 3).reshape(h, w, 3) + 11 * n) % 256).astype(np.uint8)  # (H, W, 3) uint8


def capture_time(camera: str, n: int) -> float:
    return T0 + n / 25 + (0.003 if camera == "rear" else 0.0)


def read_bag(path: Path) -> dict[str, list]:
    """topic -> [(log time ns, decoded message), ...] in log-time order, via rosbags."""
    out: dict[str, list] = {}
    with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
        for conn in reader.connections:
            out[conn.topic] = []
        for conn, t, raw in reader.messages():
            out[conn.topic].append((t, reader.deserialize(raw, conn.msgtype)))
    return out


def write_bag(path: Path, frames: int, images: bool, **kw) -> RosBagSink:
    sink = open_result_sink(path, classes=CLASSES, palette=PALETTE, ignore_index=255, images=images, **kw)
    assert isinstance(sink, RosBagSink)
    for n in range(frames):
        for cam, (h, w) in SIZES.items():
            sink.write_result(cam, n, capture_time(cam, n), frame_for(n, h, w), ids_for(n, h, w))
    sink.close()
    return sink


def check_image(msg, camera: str, n: int, encoding: str, expected: np.ndarray) -> None:
    h, w = expected.shape[:2]
    sec, nanosec = split_stamp(capture_time(camera, n))
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (sec, nanosec)
    assert msg.header.frame_id == camera
    assert (msg.encoding, msg.height, msg.width, msg.is_bigendian) == (encoding, h, w, 0)
    assert msg.step == w * (3 if encoding == "bgr8" else 1)
    assert np.array_equal(np.asarray(msg.data).reshape(expected.shape), expected)


def test_bag_reads_back_with_an_independent_reader(tmp_path: Path) -> None:
    path = tmp_path / "run" / "out.mcap"
    sink = write_bag(path, frames=4, images=True)
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.mcap"]  # no temporary file left
    bag = read_bag(path)
    assert sorted(bag) == sorted([CLASSES_TOPIC] + [f"/{c}/{k}" for c in SIZES for k in ("segmentation", "image")])
    for cam, (h, w) in SIZES.items():
        seg, img = bag[f"/{cam}/segmentation"], bag[f"/{cam}/image"]
        assert len(seg) == len(img) == 4  # one message per frame and camera
        for n, ((t, msg), (_, frame_msg)) in enumerate(zip(seg, img, strict=True)):
            check_image(msg, cam, n, "mono8", ids_for(n, h, w))
            check_image(frame_msg, cam, n, "bgr8", frame_for(n, h, w))
            assert t == msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec  # logged at capture time
    ((t, classes_msg),) = bag[CLASSES_TOPIC]
    table = json.loads(classes_msg.data)
    assert (table["classes"], table["palette"], table["ignore_index"]) == (CLASSES, PALETTE, 255)
    assert t == bag["/cam0/segmentation"][0][0]
    with open(path, "rb") as f:
        (meta,) = [m for m in make_reader(f).iter_metadata() if m.name == "edgeseg"]
    assert json.loads(meta.metadata["classes"]) == CLASSES and json.loads(meta.metadata["palette"]) == PALETTE
    d = sink.describe()
    assert d["frames"] == 8 and d["cameras"] == {"cam0": 4, "rear": 4} and CLASSES_TOPIC in d["topics"]


def test_class_maps_only_without_images(tmp_path: Path) -> None:
    path = tmp_path / "ids.mcap"
    write_bag(path, frames=2, images=False)
    bag = read_bag(path)
    assert sorted(bag) == sorted([CLASSES_TOPIC, "/cam0/segmentation", "/rear/segmentation"])
    assert [len(bag[f"/{c}/segmentation"]) for c in SIZES] == [2, 2]


def test_an_existing_bag_is_kept_unless_exist_ok(tmp_path: Path) -> None:
    path = tmp_path / "out.mcap"
    path.write_bytes(b"the user's bag")
    with pytest.raises(UsageError, match="already exists.*--exist-ok"):
        RosBagSink(path, CLASSES, PALETTE, 255)
    assert path.read_bytes() == b"the user's bag"
    sink = RosBagSink(path, CLASSES, PALETTE, 255, exist_ok=True)
    sink.write_result("cam0", 0, T0, frame_for(0, 4, 4), ids_for(0, 4, 4))
    assert path.read_bytes() == b"the user's bag"  # replaced only when the new bag is complete
    sink.close()
    assert [len(v) for v in read_bag(path).values()] == [1, 1]


def test_no_frames_no_file_and_bad_paths(tmp_path: Path) -> None:
    RosBagSink(tmp_path / "empty.mcap", CLASSES, PALETTE, 255).close()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UsageError, match="needs the suffix .mcap"):
        RosBagSink(tmp_path / "out.bag", CLASSES, PALETTE, 255)
    (tmp_path / "d.mcap").mkdir()
    with pytest.raises(UsageError, match="is an existing folder"):
        RosBagSink(tmp_path / "d.mcap", CLASSES, PALETTE, 255)
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match="is a file, so nothing can be written under it"):
        RosBagSink(tmp_path / "f" / "out.mcap", CLASSES, PALETTE, 255)
    sink = RosBagSink(tmp_path / "x.mcap", CLASSES, PALETTE, 255)
    with pytest.raises(UsageError, match=r"class map must be uint8 \(4, 4\)"):
        sink.write_result("cam0", 0, T0, frame_for(0, 4, 4), ids_for(0, 4, 5))
    sink.close()


def test_missing_extra_is_one_line_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mcap.writer", None)  # as if mcap were not installed
    with pytest.raises(BackendUnavailableError, match=r"pip install 'edgeseg\[ros\]'") as e:
        open_result_sink(tmp_path / "out.mcap", classes=CLASSES, palette=PALETTE, ignore_index=255)
    assert "\n" not in str(e.value)


def test_stamps_split_into_sec_and_nanosec() -> None:
    assert split_stamp(0) == (0, 0)
    assert split_stamp(1.5) == (1, 500_000_000)
    assert split_stamp(2.9999999999) == (3, 0)  # rounds up into the next second, never nanosec = 1e9
    with pytest.raises(UsageError, match="seconds since the Unix epoch"):
        split_stamp(float("nan"))


# A recording process: writes frames of two cameras until a signal stops it. SIGTERM gets a
# handler that unwinds (as the CLI's does); SIGINT keeps Python's default (KeyboardInterrupt).
_RECORDER = textwrap.dedent("""
    import signal, sys, time, json
    import numpy as np
    from edgeseg.runtime.bag_sink import RosBagSink
    path, side = sys.argv[1], int(sys.argv[2])
    def stop(signum, frame):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where a shell started us ignoring it
    def ids_for(n, h, w):
        return ((np.arange(h * w).reshape(h, w) // 7 + n) % 3).astype(np.uint8)
    sink = RosBagSink(path, ["road", "car", "sky"], [[0, 0, 0], [1, 1, 1], [2, 2, 2]], 255, images=True)
    n = 0
    try:
        while True:
            for cam in ("cam0", "rear"):
                frame = np.full((side, side, 3), n % 256, np.uint8)
                sink.write_result(cam, n, 1764979200.0 + n / 25, frame, ids_for(n, side, side))
            n += 1
            if n == 4:
                print("ready", flush=True)
            time.sleep(0.002)
    finally:
        sink.close()
        print(json.dumps(sink.describe()["cameras"]), flush=True)
""")


def _record_until(sig: signal.Signals, path: Path, side: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _RECORDER, str(path), str(side)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)  # a deadline, not a hang, if the child stalls
        line = proc.stdout.readline().strip() if ready else "(nothing in 30 s)"
        assert line == "ready", f"the recorder did not start: {line} {proc.stderr.read()[-2000:] if line == '' else ''}"
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_run_stopped_by_a_signal_leaves_a_readable_bag(tmp_path: Path, sig: signal.Signals) -> None:
    path = tmp_path / "out.mcap"
    proc = _record_until(sig, path, side=24)
    written = json.loads(proc.stdout.read().strip().splitlines()[-1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mcap"]
    bag = read_bag(path)
    for cam in ("cam0", "rear"):
        msgs = bag[f"/{cam}/segmentation"]
        # A signal landing inside the last write may leave that frame in the bag too.
        assert written[cam] >= 4 and len(msgs) - written[cam] in (0, 1)
        for n, (_, msg) in enumerate(msgs):
            assert msg.header.frame_id == cam
            assert np.array_equal(np.asarray(msg.data).reshape(24, 24), ids_for(n, 24, 24))


def test_a_killed_run_keeps_its_finished_chunks_in_the_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "out.mcap"
    _record_until(signal.SIGKILL, path, side=256)  # 4 frames x 2 cameras x 256 KiB: past one 1 MiB chunk
    assert not path.exists()  # the final name only ever holds a complete bag
    (tmp,) = tmp_path.glob(".out.*.mcap")
    topics, messages = {}, 0
    with open(tmp, "rb") as f:
        try:
            for record in StreamReader(f).records:  # no summary, no footer: read what is there
                if isinstance(record, Channel):
                    topics[record.id] = record.topic
                elif isinstance(record, Message):
                    messages += 1
        except EndOfFile:
            pass  # where the kill cut the file short
    assert "/cam0/segmentation" in topics.values() and messages >= 2
