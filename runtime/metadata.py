"""The facts an exported artifact carries about itself.

One schema, written by the export stage into ONNX ``metadata_props`` and into
the JSON manifest beside a TensorRT engine, read by the runtime. The runtime
never looks at a training config: if a fact is not here, it is not known.

Conventions
-----------
* ``mean``/``std`` are per RGB channel on the [0, 1] pixel scale:
  ``x = (rgb / 255 - mean) / std``.
* ``input_layout``:
    - ``"NCHW_RGB_F32"``: float32 (N, 3, H, W), already normalised (the default);
    - ``"NHWC_BGR_U8"``: uint8 (N, H, W, 3) BGR frame, normalisation inside the graph
      (``--fuse-preprocess``).
* ``output_kind``:
    - ``"logits"``: float (N, C, H, W); or uint8 (N, C, H, W) quantized logits when
      ``output_quant`` = (scale, zero_point) is set (ONNX Runtime INT8 artifacts):
      ``logits = (q - zero_point) * scale``, so the argmax of ``q`` is the argmax of the logits;
    - ``"class_map"``: uint8 (N, H, W) class ids (``--fuse-argmax``).
* ``input_size`` is the (H, W) the artifact was exported for; with ``dynamic_hw``
  the graph accepts other sizes and ``input_size`` is the preferred one.
* ``output_stride``: the output is (ceil(H/s), ceil(W/s)) for an (H, W) input; 1 (the default)
  is full resolution, s > 1 an export that ends before the head's upsampling (``--output-stride``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from .errors import ModelFormatError, UsageError, unknown_name

PREFIX = "edgeseg."
SCHEMA_VERSION = 1

LAYOUT_FLOAT = "NCHW_RGB_F32"
LAYOUT_UINT8 = "NHWC_BGR_U8"
LAYOUTS = (LAYOUT_FLOAT, LAYOUT_UINT8)
OUTPUT_LOGITS = "logits"
OUTPUT_CLASS_MAP = "class_map"
OUTPUT_KINDS = (OUTPUT_LOGITS, OUTPUT_CLASS_MAP)
PRECISIONS = ("fp32", "fp16", "int8")

# Limits of what a model file may claim about itself (a hostile or corrupt file must not make the
# runtime allocate gigabytes or print terminal escapes).
MAX_META_BYTES = 1 << 20  # all edgeseg.* values together, checked before any JSON is parsed
MAX_CLASSES = 65_536
MAX_CLASS_NAME = 256  # characters
MAX_OUTPUT_STRIDE = 1024
MAX_SIDE = 16_384  # input_size, as for --imgsz
MAX_EXTRA = 256  # entries in ``extra``

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelMeta:
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]  # one RGB colour per class
    mean: tuple[float, float, float] = IMAGENET_MEAN  # RGB, [0, 1] scale
    std: tuple[float, float, float] = IMAGENET_STD
    ignore_index: int = 255  # label value that marks "no class" in ground truth
    input_size: tuple[int, int] | None = None  # (H, W); None: any size
    dynamic_hw: bool = False
    dynamic_batch: bool = False
    batch: int = 1  # fixed batch when not dynamic_batch
    input_layout: str = LAYOUT_FLOAT
    output_kind: str = OUTPUT_LOGITS
    output_stride: int = 1
    precision: str = "fp32"
    int8_target: str = ""  # "ort_cpu" (U8S8) or "tensorrt" (S8S8) for int8 artifacts
    model_name: str = ""
    source_sha256: str = ""  # hash of the checkpoint (or ONNX) this artifact came from
    edgeseg_version: str = ""
    output_quant: tuple[float, int] | None = None  # (scale, zero point) of uint8 logits; None: float logits
    extra: Mapping[str, str] = field(default_factory=dict)  # free-form, e.g. calibration facts

    def __post_init__(self) -> None:
        if not self.classes:
            raise ModelFormatError("model metadata has no classes")
        if len(self.classes) > MAX_CLASSES:
            raise ModelFormatError(f"model metadata has {len(self.classes)} classes, more than {MAX_CLASSES}")
        if any(not isinstance(c, str) or len(c) > MAX_CLASS_NAME for c in self.classes):
            raise ModelFormatError(f"model metadata has a class name that is not text of at most {MAX_CLASS_NAME} "
                                   "characters")
        if len(self.palette) != len(self.classes):
            raise ModelFormatError(
                f"model metadata has {len(self.classes)} classes but {len(self.palette)} palette colours"
            )
        bad = next((c for c in self.palette if len(c) != 3 or not all(0 <= v <= 255 for v in c)), None)
        if bad is not None:
            raise ModelFormatError(f"palette colour {list(bad)} is not an RGB triple of 0-255 values")
        _check_stats(self.mean, self.std)
        if not isinstance(self.extra, Mapping) or len(self.extra) > MAX_EXTRA:
            raise ModelFormatError(f"'extra' must be a mapping of at most {MAX_EXTRA} entries, "
                                   f"got {type(self.extra).__name__}")
        if self.input_size is not None and not all(1 <= v <= MAX_SIDE for v in self.input_size):
            raise ModelFormatError(f"input size {list(self.input_size)} is out of range (1-{MAX_SIDE} per side)")
        if self.input_layout not in LAYOUTS:
            raise ModelFormatError(f"unknown input layout {self.input_layout!r}; expected one of {LAYOUTS}")
        if self.output_kind not in OUTPUT_KINDS:
            raise ModelFormatError(f"unknown output kind {self.output_kind!r}; expected one of {OUTPUT_KINDS}")
        if not isinstance(self.output_stride, int) or not 1 <= self.output_stride <= MAX_OUTPUT_STRIDE:
            raise ModelFormatError(f"output stride must be an integer from 1 to {MAX_OUTPUT_STRIDE}, "
                                   f"got {self.output_stride!r}")
        if self.precision not in PRECISIONS:
            raise ModelFormatError(f"unknown precision {self.precision!r}; expected one of {PRECISIONS}")
        if self.output_quant is not None:
            scale, zero = self.output_quant
            if not (scale > 0 and 0 <= zero <= 255) or self.output_kind != OUTPUT_LOGITS:
                raise ModelFormatError(f"output_quant {self.output_quant!r} must be (scale > 0, zero point 0-255) "
                                       "on a logits output")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def float_logits(self, out: np.ndarray) -> np.ndarray:
        """Model output (N, C, H, W) -> float32 logits: dequantized when ``output_quant`` is set."""
        if self.output_quant is None:
            return out if out.dtype == np.float32 else out.astype(np.float32)
        scale, zero = self.output_quant
        return (out.astype(np.float32) - np.float32(zero)) * np.float32(scale)

    def with_(self, **changes: Any) -> ModelMeta:
        """A copy with some fields changed (e.g. precision after quantization)."""
        return replace(self, **changes)

    # -- serialisation --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["classes"] = list(self.classes)
        d["palette"] = [list(c) for c in self.palette]
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        d["input_size"] = list(self.input_size) if self.input_size else None
        d["output_quant"] = list(self.output_quant) if self.output_quant else None
        d["extra"] = dict(self.extra)
        d["schema_version"] = SCHEMA_VERSION
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "model") -> ModelMeta:
        known = {f.name for f in fields(cls)}
        try:
            kw = {k: v for k, v in d.items() if k in known}
            kw["classes"] = tuple(str(c) for c in kw["classes"])
            kw["palette"] = tuple(tuple(int(v) for v in c) for c in kw["palette"])
            for key in ("mean", "std"):
                if key in kw:
                    kw[key] = tuple(float(v) for v in kw[key])
            if kw.get("input_size"):
                kw["input_size"] = tuple(int(v) for v in kw["input_size"])
            else:
                kw["input_size"] = None
            if kw.get("output_quant"):
                scale, zero = kw["output_quant"]
                kw["output_quant"] = (float(scale), int(zero))
            else:
                kw["output_quant"] = None
            extra = kw.get("extra") or {}
            if not isinstance(extra, Mapping):
                raise ModelFormatError(f"'extra' must be a mapping, got {type(extra).__name__}")
            kw["extra"] = {str(k): str(v) for k, v in extra.items()}
            return cls(**kw)
        except ModelFormatError as e:
            raise ModelFormatError(f"{source}: {e}") from None
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise ModelFormatError(f"{source}: edgeseg metadata is incomplete or malformed ({e})") from None

    def to_props(self) -> dict[str, str]:
        """Flat string key/values for ONNX ``metadata_props`` (all keys ``edgeseg.*``)."""
        return {PREFIX + k: json.dumps(v) for k, v in self.to_dict().items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "model") -> ModelMeta:
        """Inverse of :meth:`to_props`; raises a message that says how to fix a plain ONNX."""
        ours = {k[len(PREFIX):]: v for k, v in props.items() if k.startswith(PREFIX)}
        if "classes" not in ours:
            raise ModelFormatError(
                f"{source} has no edgeseg metadata; re-export it with 'edgeseg export' (or "
                "torch_to_onnx(..., classes=[...])), or give the classes by hand in Python: "
                "Segmenter(..., classes=[...])"
            )
        size = sum(len(k) + len(v) for k, v in ours.items())
        if size > MAX_META_BYTES:
            raise ModelFormatError(f"{source}: edgeseg metadata is {size:,} bytes, more than the {MAX_META_BYTES:,} "
                                   "a model's metadata may have; the file is corrupt or not an edgeseg export")
        try:
            d = {k: json.loads(v) for k, v in ours.items()}
        except json.JSONDecodeError as e:
            raise ModelFormatError(f"{source}: edgeseg metadata is not valid JSON ({e})") from None
        except RecursionError:
            raise ModelFormatError(f"{source}: edgeseg metadata is nested too deeply to be real") from None
        return cls.from_dict(d, source)


def _check_stats(mean: Sequence[float], std: Sequence[float]) -> None:
    """mean/std: three finite RGB values each, std > 0 (std 0 divides by zero, NaN spreads to every pixel)."""
    for name, values in (("mean", mean), ("std", std)):
        if len(values) != 3 or not all(_finite(v) for v in values):
            raise ModelFormatError(f"{name} {list(values)} must be three finite numbers (R, G, B)")
    if not all(v > 0 for v in std):
        raise ModelFormatError(f"std {list(std)} must be positive for every channel")


def _finite(v: Any) -> bool:
    try:
        return not isinstance(v, bool) and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: control characters (ANSI escapes included) shown as
    ``\\xNN`` instead of acting on the terminal."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def default_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """Distinct, stable colours for ``n`` classes (for models that come without a palette)."""
    colours = []
    for i in range(n):
        # Bit-interleaving scheme of the PASCAL VOC palette: neighbours get unlike colours.
        r = g = b = 0
        c = i + 1
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append((r, g, b))
    return tuple(colours)


def class_ids(names_or_ids: Iterable[int | str], classes: Sequence[str]) -> list[int]:
    """Class names (any case), ids or digit strings -> ids; unknown names get close matches."""
    by_name = {c.lower(): i for i, c in enumerate(classes)}
    ids = []
    for v in names_or_ids:
        if isinstance(v, str) and not v.isdigit():
            if v.lower() not in by_name:
                raise unknown_name("class", v, classes)
            ids.append(by_name[v.lower()])
            continue
        if isinstance(v, bool) or not isinstance(v, (int, str)) and not hasattr(v, "__index__"):
            raise UsageError(f"class {v!r} must be a class name or id")
        i = int(v)
        if not 0 <= i < len(classes):
            raise UsageError(f"class id {i} is out of range: the model has {len(classes)} classes (0-{len(classes) - 1})")
        ids.append(i)
    return ids
