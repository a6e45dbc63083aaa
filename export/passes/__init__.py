"""Graph rewrites that steer ONNX Runtime's CPU kernel and layout choices, as passes.

A pass (:class:`~.base.Pass`) has a ``name``, a one-line ``doc``, ``applies(index)`` (a cheap look at the op
types) and ``apply(index, ctx)``, which edits the graph in place and returns the names of what it rewrote
(empty: nothing matched, graph unchanged). A pass whose pattern does not match is skipped, never an error.

Stages, each an ordered list run by :func:`run_stage` over one shared :class:`~.base.GraphIndex`:

* ``export`` (every float export): split_depth_to_space.
* ``ort_before_calibration`` (the float graph the ``ort`` INT8 flavour calibrates): fold_input_normalization,
  subpixel_bilinear_head, split_depth_to_space, channels_last_depth_to_space.
* ``ort_ranges`` (the calibration ranges): share_concat_ranges.
* ``ort_after_qdq`` (the quantized graph): raw_uint8_input, sink_dequantize (first: the fence's Reshapes
  must stay between their Q/DQ pairs), keep_nearest_resizes_nchw, end_in_quantized_logits, pad_input_channels.
* ``tensorrt``: none; TensorRT places Q/DQ and picks layouts itself.

Every node a pass creates carries ``NodeProto.metadata_props`` ``{"edgeseg.pass": <pass name>}`` (plus
``"edgeseg.role"`` on the few a later pass looks for). The artifact's metadata records each pass that ran
with its count (``extra["passes"]``, read by :func:`pass_counts`) and those switched off
(``extra["passes_disabled"]``; ``edgeseg export --no-pass NAME``). Each pass's gain on the installed ONNX
Runtime: ``benchmarks/passes_bench.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import onnx

from edgeseg.runtime.errors import unknown_name

from .base import PASS_KEY, ROLE_KEY, GraphIndex, Pass, PassContext, with_role
from .channels_last_depth_to_space import ChannelsLastDepthToSpace
from .end_in_quantized_logits import EndInQuantizedLogits
from .fold_input_normalization import FoldInputNormalization, input_normalizer
from .keep_nearest_resizes_nchw import KeepNearestResizesNchw
from .pad_input_channels import PadInputChannels
from .raw_uint8_input import RawUint8Input
from .share_concat_ranges import ShareConcatRanges
from .sink_dequantize import SinkDequantize
from .split_depth_to_space import SplitDepthToSpace
from .subpixel_bilinear_head import SubpixelBilinearHead

__all__ = ["PASS_KEY", "ROLE_KEY", "PASSES", "STAGES", "GraphIndex", "Pass", "PassContext", "PassRecord",
           "check_pass_names", "input_normalizer", "pass_counts", "passes_meta", "run_pass", "run_stage",
           "with_role"]

PASSES: dict[str, Pass] = {p.name: p for p in (
    FoldInputNormalization(), SubpixelBilinearHead(), SplitDepthToSpace(), ChannelsLastDepthToSpace(),
    ShareConcatRanges(), RawUint8Input(), SinkDequantize(), KeepNearestResizesNchw(), EndInQuantizedLogits(),
    PadInputChannels())}

STAGES: dict[str, tuple[str, ...]] = {
    "export": ("split_depth_to_space",),
    "ort_before_calibration": ("fold_input_normalization", "subpixel_bilinear_head", "split_depth_to_space",
                               "channels_last_depth_to_space"),
    "ort_ranges": ("share_concat_ranges",),
    "ort_after_qdq": ("raw_uint8_input", "sink_dequantize", "keep_nearest_resizes_nchw", "end_in_quantized_logits",
                      "pad_input_channels"),
    "tensorrt": (),
}

# extra keys older edgeseg versions wrote per pass (read by pass_counts for files made before extra["passes"])
LEGACY_KEYS = {"nchw_resizes": "keep_nearest_resizes_nchw", "sunk_dequantize": "sink_dequantize",
               "shared_concat_ranges": "share_concat_ranges", "split_depth_to_space": "split_depth_to_space",
               "channels_last_depth_to_space": "channels_last_depth_to_space",
               "subpixel_bilinear_head": "subpixel_bilinear_head"}


@dataclass
class PassRecord:
    """One pass of one run: what it rewrote, or why it did not run."""

    name: str
    stage: str
    changed: list[str] = field(default_factory=list)
    disabled: bool = False  # switched off (--no-pass)

    @property
    def count(self) -> int:
        return len(self.changed)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "stage": self.stage, "count": self.count, "changed": list(self.changed),
                "disabled": self.disabled}


def check_pass_names(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` when each is a pass; a UsageError with close matches otherwise."""
    names = tuple(names)
    for n in names:
        if n not in PASSES:
            raise unknown_name("pass", n, PASSES)
    return names


def run_stage(stage: str, proto: onnx.ModelProto, *, skip: Iterable[str] = (), ctx: PassContext | None = None,
              index: GraphIndex | None = None) -> list[PassRecord]:
    """Run the passes of ``stage`` in order on ``proto`` (in place), sharing one index; one record each."""
    skip = set(check_pass_names(skip))
    ctx = ctx if ctx is not None else PassContext()
    index = index or GraphIndex(proto)
    records = []
    for name in STAGES[stage]:
        rec = PassRecord(name, stage, disabled=name in skip)
        p = PASSES[name]
        if not rec.disabled and p.applies(index):
            rec.changed = p.apply(index, ctx)
            if rec.changed:
                index.refresh()
        records.append(rec)
    return records


def run_pass(name: str, proto: onnx.ModelProto, ctx: PassContext | None = None) -> list[str]:
    """One pass on ``proto`` (in place), outside any stage: tests and benchmarks."""
    check_pass_names([name])
    index = GraphIndex(proto)
    p = PASSES[name]
    return p.apply(index, ctx if ctx is not None else PassContext()) if p.applies(index) else []


def passes_meta(records: Iterable[PassRecord]) -> dict[str, str]:
    """The metadata ``extra`` entries for a run's records: ``passes`` ("name=count,...", in run order) and
    ``passes_disabled`` (names)."""
    records = list(records)
    return {"passes": ",".join(f"{r.name}={r.count}" for r in records if not r.disabled),
            "passes_disabled": ",".join(r.name for r in records if r.disabled)}


def pass_counts(extra: Mapping[str, str]) -> dict[str, int]:
    """Pass name -> count from an artifact's ``extra`` (the ``passes`` entry, or an older file's per-pass keys)."""
    text = extra.get("passes")
    if text is not None:
        counts: dict[str, int] = {}
        for item in filter(None, text.split(",")):
            name, _, value = item.partition("=")
            counts[name] = counts.get(name, 0) + int(value or 0)
        return counts
    return {name: int(extra[key]) for key, name in LEGACY_KEYS.items() if str(extra.get(key, "")).isdigit()}
