"""The common dataset base: classes, palette and ignore index travel with the data.

Every layout (CamVid, Cityscapes, image/mask folders, procedural scenes) is a
:class:`SegDataset`: a list of (image, label) file pairs found and matched at
construction, decoded on access (or once, with ``cache=True``), checked for the
problems that would otherwise surface hours into a training run, and passed
through an optional ``transform(image, label, rng)``.

Torch-free (numpy + cv2): the trainer wraps these objects in a torch DataLoader,
``edgeseg val`` uses them in a runtime-only install.
"""

from __future__ import annotations

import inspect
import logging
import os
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeseg.runtime.errors import DatasetError
from edgeseg.runtime.image_size import image_size
from edgeseg.runtime.jpeg import JPEG_SUFFIXES, MAX_IMAGE_PIXELS, read_image_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SPLITS = ("train", "val", "test")

RGB = tuple[int, int, int]
Pair = tuple[np.ndarray, np.ndarray]  # (image (H, W, 3) uint8 RGB, label (H, W) uint8)
Transform = Callable[..., Pair]

log = logging.getLogger("edgeseg.data")


# -- decoding ----------------------------------------------------------------------------------
def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file as RGB uint8 (H, W, 3); raises DatasetError naming the file."""
    path = Path(path)
    # JPEGs through libjpeg-turbo straight to RGB where installed: faster than OpenCV (docs/runtime.md#decoding).
    # It refuses an image whose header declares too many pixels; only then is the header read again, to say so.
    img = read_image_file(path, rgb=True)  # (H, W, 3) uint8 RGB
    if img is None:
        try:
            with open(path, "rb") as f:
                _check_pixels(f.read(65536), path, "image")
        except OSError:
            pass  # reported below as unreadable
        raise DatasetError(f"cannot read image {path}: the file is missing, empty or corrupt; "
                           "replace it or remove it together with its label")
    return img


def read_label(path: str | os.PathLike, keep_colour: bool = False) -> np.ndarray:
    """Decode a label file as stored: (H, W) for id masks, (H, W, 3) RGB for colour masks.

    A grey mask saved as RGB becomes (H, W) unless ``keep_colour`` (palettes may hold greys).
    An indexed PNG ("P" mode, as CamVid/VOC copies often store masks) gives its palette
    indices as (H, W) class ids whatever its colours: the index is the class id (VOC).
    """
    path = Path(path)
    data = _read_bytes(path)
    lab = None
    if data is not None:
        _check_pixels(data, path, "label")
        indexed = _png_with_index_palette(data)
        if indexed is None:
            lab = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        else:
            lab = cv2.imdecode(indexed, cv2.IMREAD_UNCHANGED)  # (H, W, 3) uint8, every channel = index
            if lab is not None and lab.ndim == 3:
                lab = np.ascontiguousarray(lab[:, :, 0])  # (H, W) uint8 palette indices
    if lab is None:
        raise DatasetError(f"cannot read label {path}: the file is missing, empty or corrupt; "
                           "replace it or remove it together with its image")
    if lab.dtype != np.uint8:
        if lab.dtype == np.uint16 and lab.size and int(lab.max()) < 256:
            lab = lab.astype(np.uint8)  # 16-bit PNGs holding 8-bit ids
        else:
            raise DatasetError(f"label {path} has {lab.dtype} pixels; expected 8-bit class ids "
                               "(save the mask as an 8-bit PNG)")
    if lab.ndim == 3:
        if lab.shape[2] == 4:
            lab = lab[:, :, :3]  # drop alpha
        if lab.shape[2] == 1:
            lab = lab[:, :, 0]
        elif not keep_colour and np.array_equal(lab[:, :, 0], lab[:, :, 1]) and np.array_equal(
                lab[:, :, 1], lab[:, :, 2]):
            lab = lab[:, :, 0]  # grey saved as RGB: the ids are the grey value
        else:
            lab = cv2.cvtColor(lab, cv2.COLOR_BGR2RGB)  # (H, W, 3) uint8 RGB colour mask
    return lab


def _check_pixels(data: Any, path: Path, what: str) -> None:
    """DatasetError when the file's header declares more pixels than any real image has (a
    decompression bomb: a small PNG can inflate to gigabytes); checked before decoding."""
    size = image_size(memoryview(data).cast("B"))
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise DatasetError(f"{what} {path} declares {size[1]}x{size[0]} pixels (WxH), more than the limit of "
                           f"{MAX_IMAGE_PIXELS:,}; it is corrupt or hostile: replace or remove it")


def is_lossy_label(path: Any) -> bool:
    """A label file whose format is lossy (JPEG): its class ids or colours are off at edges."""
    return isinstance(path, (str, os.PathLike)) and Path(path).suffix.lower() in JPEG_SUFFIXES


def warn_lossy_labels(files: Sequence[tuple[Any, Any]], where: str) -> int:
    """Log one warning when labels are JPEGs; returns how many are.

    JPEG blurs the edges between regions, so an id mask gets neighbouring (wrong but valid) ids
    there without any error, and a colour mask gets colours that are in no palette.
    """
    lossy = [lab for _, lab in files if is_lossy_label(lab)]
    if lossy:
        log.warning("%d of %d labels in %s are JPEG files (first: %s): JPEG compression changes class ids "
                    "and colours along region edges; convert the masks to PNG from their lossless source",
                    len(lossy), len(files), where, lossy[0])
    return len(lossy)


def _read_bytes(path: Path) -> np.ndarray | None:
    # cv2.imread cannot open non-ASCII paths on some platforms; decoding bytes always works.
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    return data if data.size else None


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_INDEXED = 3  # IHDR colour type of a palette ("P" mode) PNG


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length (4, big-endian) + type (4) + data + CRC-32 of type and data (4)."""
    return (len(body).to_bytes(4, "big") + kind + body
            + (zlib.crc32(kind + body) & 0xFFFFFFFF).to_bytes(4, "big"))


def _png_with_index_palette(data: np.ndarray) -> np.ndarray | None:
    """For an indexed PNG, the same PNG whose palette entry i is the grey (i, i, i); else None.

    OpenCV always expands a palette to colours, which loses the stored indices (and two entries
    may share a colour, e.g. unused ones left black). With this palette the decoded value *is*
    the index, exactly, at bit depths 1/2/4/8. Only IHDR, the image data (IDAT) and IEND are
    kept: transparency (tRNS) and histogram (hIST) chunks refer to the old palette.
    """
    # IHDR comes first: length 13, "IHDR", width(4) height(4) bit depth(1) colour type(1) ..., CRC(4)
    head = data[:33].tobytes()  # only the header: most labels are not indexed and need no copy
    if len(head) < 33 or head[:8] != _PNG_SIGNATURE or head[8:16] != b"\x00\x00\x00\x0dIHDR":
        return None
    bit_depth, colour_type = head[24], head[25]
    if colour_type != _PNG_INDEXED or bit_depth not in (1, 2, 4, 8):
        return None  # not indexed, or invalid: OpenCV decodes (or refuses) the file as it is
    raw = data.tobytes()
    grey = np.repeat(np.arange(1 << bit_depth, dtype=np.uint8), 3).tobytes()  # (2**depth * 3,) RGB triplets
    parts = [_PNG_SIGNATURE, raw[8:33], _png_chunk(b"PLTE", grey)]
    pos = 33
    while pos + 12 <= len(raw):
        end = pos + 12 + int.from_bytes(raw[pos:pos + 4], "big")
        if end > len(raw):
            break  # truncated: the decoder then reports the file as corrupt
        kind = raw[pos + 4:pos + 8]
        if kind in (b"IDAT", b"IEND"):
            parts.append(raw[pos:end])
        if kind == b"IEND":
            break
        pos = end
    return np.frombuffer(b"".join(parts), np.uint8)


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (hidden files skipped)."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def match_pairs(images: Sequence[Path], labels: Sequence[Path], image_key: Callable[[Path], str],
                label_key: Callable[[Path], str], where: str) -> list[tuple[Path, Path]]:
    """Pair images with labels by key; any image without a label (or the reverse) is an error.

    So is a key shared by two images (a.jpg, a.png) or two labels: one label would silently
    serve both images, or one of the labels would be dropped.
    """
    by_key: dict[str, Path] = {}
    for lab in labels:
        key = label_key(lab)
        if key in by_key:
            raise DatasetError(f"labels {by_key[key]} and {lab} share the name {key!r}; keep one of them "
                               "(each image needs exactly one label)")
        by_key[key] = lab
    image_of: dict[str, Path] = {}
    pairs: list[tuple[Path, Path]] = []
    used: set[str] = set()
    missing: list[Path] = []
    for img in images:
        key = image_key(img)
        if key in image_of:
            raise DatasetError(f"images {image_of[key]} and {img} share the name {key!r}, so one label would "
                               "serve both; rename or remove one of them")
        image_of[key] = img
        if key in by_key:
            pairs.append((img, by_key[key]))
            used.add(key)
        else:
            missing.append(img)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(f"image {missing[0]} has no label in {where}{more}; "
                           "add the label or remove the image")
    orphans = [lab for lab in labels if label_key(lab) not in used]
    if orphans:
        more = f" (and {len(orphans) - 1} more)" if len(orphans) > 1 else ""
        raise DatasetError(f"label {orphans[0]} has no image{more}; add the image or remove the label")
    return pairs


# -- the base class ----------------------------------------------------------------------------
class SegDataset:
    """A segmentation dataset: ``ds[i] -> (image (H, W, 3) uint8 RGB, label (H, W) uint8)``.

    Subclasses set ``classes``, ``palette``, ``ignore_index`` and ``files`` and may override
    :meth:`load_pair` (the raw, untransformed sample). Augmentation randomness: each item gets
    its own generator; after :meth:`set_epoch` it is seeded from ``(seed, epoch, index)`` so
    runs are reproducible and DataLoader workers never repeat each other's draws; before it,
    from fresh OS entropy.
    """

    name: str = ""

    def __init__(self, root: str | os.PathLike, split: str, classes: Sequence[str], palette: Sequence[RGB],
                 ignore_index: int, files: Sequence[tuple[Any, Any]], transform: Transform | None = None,
                 cache: bool = False, seed: int = 0) -> None:
        self.root = root if isinstance(root, str) and "://" in root else Path(root)
        self.split = split
        self.classes = list(classes)
        self.palette = [tuple(int(v) for v in c) for c in palette]
        self.ignore_index = int(ignore_index)
        self.files = list(files)
        self.seed = int(seed)
        self.epoch: int | None = None
        self._cache: list[Pair] | None = None
        self.transform = transform
        if len(self.palette) != len(self.classes):
            raise DatasetError(f"{self.root}: {len(self.classes)} classes but {len(self.palette)} colours; "
                               "give one RGB colour per class")
        # Labels are uint8: a void value outside C..255 cannot be stored (crop padding, id lookups wrap).
        if len(self.classes) > 255:
            raise DatasetError(f"{self.root}: {len(self.classes)} classes do not fit 8-bit labels; "
                               "at most 255 classes (ids 0..254) plus a void value")
        if 0 <= self.ignore_index < len(self.classes):
            raise DatasetError(f"{self.root}: ignore index {self.ignore_index} is also class "
                               f"{self.classes[self.ignore_index]!r}; use a value >= {len(self.classes)}")
        if not len(self.classes) <= self.ignore_index <= 255:
            raise DatasetError(f"{self.root}: ignore index {self.ignore_index} does not fit 8-bit labels; "
                               f"void must be {len(self.classes)}..255 (255 is usual); "
                               "fix it in classes.txt/classes.json")
        if not self.files:
            raise DatasetError(f"split {split!r} of {self.root} is empty: no image/label pairs found; "
                               "check the folder or choose another split")
        warn_lossy_labels(self.files, f"{self.root} ({split})")
        if cache:
            self.preload()

    # -- public API -----------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def transform(self) -> Transform | None:
        return self._transform

    @transform.setter
    def transform(self, fn: Transform | None) -> None:
        self._transform = fn
        self._transform_takes_rng = fn is not None and _accepts_rng(fn)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Pair:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index %= len(self)
        if self._cache is not None:
            image, label = self._cache[index]
            image, label = image.copy(), label.copy()  # transforms may work in place
        else:
            image, label = self.load_pair(index)
        if self._transform is not None:
            if self._transform_takes_rng:
                image, label = self._transform(image, label, self.item_rng(index))
            else:
                image, label = self._transform(image, label)
        return image, label

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, "
                f"classes={self.num_classes}, ignore_index={self.ignore_index})")

    def set_epoch(self, epoch: int) -> None:
        """Make augmentation draws a function of ``(seed, epoch, index)`` (call once per epoch)."""
        self.epoch = int(epoch)

    def item_rng(self, index: int) -> np.random.Generator:
        if self.epoch is None:
            return np.random.default_rng()
        return np.random.default_rng((self.seed, self.epoch, int(index)))

    def preload(self, threads: int = 4) -> None:
        """Decode every pair into RAM once (about 0.7 MB per 360x480 CamVid pair)."""
        if self._cache is not None:
            return
        # cv2 decoding releases the GIL, so threads overlap well even on 2 cores.
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            self._cache = list(pool.map(self.load_pair, range(len(self))))

    @property
    def cached(self) -> bool:
        return self._cache is not None

    def check(self) -> dict[str, Any]:
        """Decode and validate every pair; raise one DatasetError naming the first bad file."""
        return check_dataset(self)

    # -- for subclasses --------------------------------------------------------------------------
    def load_pair(self, index: int) -> Pair:
        """The raw sample ``index``: decoded, converted to class ids, validated."""
        img_path, lab_path = self.files[index]
        image = read_image(img_path)  # (H, W, 3) uint8 RGB
        label = self.convert_label(self.read_raw_label(lab_path), lab_path)  # (H, W) uint8
        if image.shape[:2] != label.shape[:2]:
            raise DatasetError(f"image {img_path} is {image.shape[1]}x{image.shape[0]} but its label "
                               f"{lab_path} is {label.shape[1]}x{label.shape[0]} (WxH); "
                               "they must be the same size")
        self.validate_label(label, lab_path)
        return image, label

    def load_label(self, index: int) -> np.ndarray:
        """Only the label of sample ``index`` (class statistics need no image decoding)."""
        if self._cache is not None:
            return self._cache[index][1]
        lab_path = self.files[index][1]
        label = self.convert_label(self.read_raw_label(lab_path), lab_path)  # (H, W) uint8
        self.validate_label(label, lab_path)
        return label

    def read_raw_label(self, path: Any) -> np.ndarray:
        return read_label(path)

    def convert_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Stored label -> (H, W) uint8 class ids (identity for id masks)."""
        if raw.ndim != 2:
            raise DatasetError(f"label {path} is a colour image; this layout expects 8-bit class-id masks "
                               "(or use the 'folder' layout with a palette in classes.txt)")
        return raw

    def validate_label(self, label: np.ndarray, path: Any) -> None:
        """Every value must be a class id or the ignore index."""
        top = int(label.max()) if label.size else 0
        if top < self.num_classes:
            return
        counts = np.bincount(label.reshape(-1), minlength=256)
        counts[: self.num_classes] = 0
        if 0 <= self.ignore_index < 256:
            counts[self.ignore_index] = 0
        bad = np.flatnonzero(counts)
        if bad.size:
            shown = ", ".join(str(v) for v in bad[:8]) + (" ..." if bad.size > 8 else "")
            fix = ("it is a JPEG, whose compression changes ids along region edges; save the masks as PNG"
                   if is_lossy_label(path) else "fix the mask or the class list")
            raise DatasetError(f"label {path} has values {shown} that are neither a class "
                               f"(0..{self.num_classes - 1}) nor void ({self.ignore_index}); {fix}")


def _accepts_rng(fn: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind == p.VAR_POSITIONAL for p in params) or any(p.name == "rng" for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3


def check_dataset(dataset: SegDataset, limit: int | None = None,
                  progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Decode every raw pair of ``dataset`` (no transform) and validate it.

    Raises one :class:`DatasetError` line naming the first bad file and how many pairs failed;
    returns ``{"pairs": n, "sizes": {"HxW": count}, "classes_seen": [...]}`` when all are usable.
    ``progress(1)`` is called after each pair (e.g. a progress bar's update).
    """
    n = len(dataset) if limit is None else min(limit, len(dataset))
    sizes: dict[str, int] = {}
    seen = np.zeros(256, dtype=bool)
    first: str | None = None
    failures = 0
    for i in range(n):
        try:
            # Cached pairs were validated when they were decoded: no second decode.
            image, label = dataset._cache[i] if dataset._cache is not None else dataset.load_pair(i)
        except DatasetError as e:
            failures += 1
            first = first or str(e)
        else:
            key = f"{image.shape[0]}x{image.shape[1]}"
            sizes[key] = sizes.get(key, 0) + 1
            seen[np.unique(label)] = True
        if progress is not None:
            progress(1)
    if failures:
        raise DatasetError(f"{failures} of {n} pairs in {dataset.root} ({dataset.split}) are unusable; "
                           f"first: {first}")
    return {"pairs": n, "sizes": sizes,
            "classes_seen": [dataset.classes[c] for c in np.flatnonzero(seen[: dataset.num_classes])]}


def split_folder(root: Path, parts: Iterable[str], split: str, what: str) -> Path:
    """``root/<parts...>`` must be a folder, else a DatasetError that lists the splits present."""
    folder = root.joinpath(*parts)
    if folder.is_dir():
        return folder
    parent = folder.parent
    present = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
    hint = f"splits present: {', '.join(present)}" if present else f"{parent} does not exist"
    raise DatasetError(f"{what} split {split!r} not found: {folder} is missing ({hint})")
