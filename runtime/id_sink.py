"""Raw class ids: one lossless 8-bit PNG per frame and camera, with capture times beside them.

Folder layout::

    ids/
      classes.json        names, palette (RGB), ignore index: what each pixel value means
      frames.jsonl        one line per frame written, in write order:
                          {"camera": "cam0", "index": 123, "file": "cam0/000123.png",
                           "capture_time": 1764979200.04, "width": 960, "height": 540}
      cam0/000123.png     (H, W) 8-bit greyscale PNG; pixel value = class id
      cam1/000123.png

* File names are the frame's index from its source (at least 6 digits), so a live camera
  that dropped frames has gaps; ``frames.jsonl`` lists what exists and when each was captured
  (seconds since the Unix epoch).
* Pixel values are class ids ``0 .. len(classes)-1``. ``ignore_index`` (``classes.json``) is
  the "no class" value of ground-truth labels (255, or 11 for CamVid's void); predicted maps
  never contain it, but labels compared with them use it.
* PNG is lossless; read a file back with ``cv2.imread(path, cv2.IMREAD_UNCHANGED)`` (a plain
  ``imread`` converts to 3 channels) or PIL's ``Image.open``.
* A non-empty folder is refused unless ``exist_ok``; even then an existing file is never
  replaced: writing a frame whose file exists raises (so re-running the same clip into the
  same folder stops at its first frame), and ``classes.json`` must match the run's classes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from .errors import SourceError, UsageError
from .fileio import atomic_path, check_writable, write_json
from .result_sinks import CountingResultSink

CLASSES_FILE = "classes.json"
SIDECAR_FILE = "frames.jsonl"


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


class ClassIdFolderSink(CountingResultSink):
    """Writes each frame's class map as ``<folder>/<camera>/<index:06d>.png`` (see module doc)."""

    def __init__(self, folder: str | os.PathLike, classes, palette, ignore_index: int,
                 exist_ok: bool = False) -> None:
        self.folder = Path(folder)
        super().__init__(classes, palette, ignore_index, f"class-id folder {self.folder}")
        self.exist_ok = exist_ok
        self._prepare_folder()
        try:
            self._check_or_write_classes()
            # Appended one whole line per frame; flushed each time so a crash loses at most
            # the line being written.
            self._sidecar = open(self.folder / SIDECAR_FILE, "a", encoding="utf-8")
            if self._sidecar.tell() and not _ends_with_newline(self.folder / SIDECAR_FILE):
                self._sidecar.write("\n")  # a killed earlier run cut its last line short: start a fresh one
        except OSError as e:
            raise SourceError(f"cannot write class ids into {self.folder}: {e.strerror or e}") from None

    def _prepare_folder(self) -> None:
        if self.folder.exists() and not self.folder.is_dir():
            raise UsageError(f"class-id output {self.folder} is a file; give a folder (new or empty)")
        check_writable(self.folder, "class-id folder", folder_ok=True)
        if self.folder.is_dir() and next(self.folder.iterdir(), None) is not None and not self.exist_ok:
            raise UsageError(f"class-id folder {self.folder} is not empty; choose a new or empty folder, or pass "
                             "--exist-ok to add to it (existing files are never replaced)")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SourceError(f"cannot create class-id folder {self.folder}: {e.strerror or e}") from None

    def _check_or_write_classes(self) -> None:
        path = self.folder / CLASSES_FILE
        want = self.table.to_json()
        if not path.exists():
            write_json(path, want)
            return
        try:
            have = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            have = None
        if have != want:
            raise UsageError(f"{path} describes other classes than this model's; ids of two class tables in one "
                             "folder could not be told apart: choose another folder")

    def _write(self, camera: str, index: int, capture_time: float,
               frame_bgr: np.ndarray,  # (H, W, 3) uint8
               class_map: np.ndarray) -> None:  # (H, W) uint8
        h, w = class_map.shape
        rel = f"{camera}/{int(index):06d}.png"
        path = self.folder / rel
        if path.exists():
            raise SourceError(f"{path} already exists; class ids never replace a file: write into a new folder "
                              "(or move the old one away)")
        ok, png = cv2.imencode(".png", np.ascontiguousarray(class_map))  # 8-bit greyscale, lossless
        if not ok:
            raise SourceError(f"cannot encode the class map of camera {camera}, frame {index} as PNG")
        line = json.dumps({"camera": camera, "index": int(index), "file": rel, "capture_time": float(capture_time),
                           "width": w, "height": h})
        try:
            # A new name per frame, so nothing to sweep (and a folder scan per frame would grow with the run)
            with atomic_path(path, sweep=False) as tmp:  # creates the camera's folder on first use
                tmp.write_bytes(png.tobytes())
            self._sidecar.write(line + "\n")  # after the PNG: every listed file exists
            self._sidecar.flush()
        except OSError as e:
            raise SourceError(f"cannot write {path}: {e.strerror or e}") from None

    def _finish(self) -> None:
        self._sidecar.close()

    def describe(self) -> dict:
        return {"sink": "ids", "path": str(self.folder), "format": "png (8-bit, pixel = class id)",
                "frames": self.frames, "cameras": dict(self.per_camera)}
