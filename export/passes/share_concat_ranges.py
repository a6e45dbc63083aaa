"""Give each Concat's inputs and output one calibration range, so ONNX Runtime's QLinearConcat copies
bytes instead of requantizing every input through a lookup table (docs/benchmarks.md#graph-passes).

Works on the calibration ranges, before quantization; the float graph is only read. A U-Net decoder
concatenates an upsampled map with an encoder skip, both ReLU outputs with similar ranges, so widening
both to their union costs little precision; groups whose spans differ more than MAX_SPAN_RATIO keep theirs.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .base import GraphIndex, PassContext

log = logging.getLogger("edgeseg.export")

NAME = "share_concat_ranges"
# Ops whose output ONNX Runtime's QDQ quantizer quantizes with its input's parameters
# (QDQDirect8BitOp and its MaxPool/Resize subclasses): their own calibrated range is never used.
PARAMS_FROM_INPUT = ("AveragePool", "Flatten", "MaxPool", "Reshape", "Resize", "Slice", "Squeeze", "Transpose",
                     "Unsqueeze")
# A shared range spanning more than this many times an input's own range costs that input more than
# 2 of its 8 bits; such Concats keep their separate ranges (and their requantizing QLinearConcat).
MAX_SPAN_RATIO = 4.0


def _range_value(v: Any) -> float | None:
    """A bound from ORT's calibration JSON (a number, or ``{"data": x or [x], ...}``); None if not one number."""
    values = np.asarray(v["data"] if isinstance(v, dict) else v, dtype=np.float64).ravel()
    return float(values[0]) if values.size == 1 else None


class ShareConcatRanges:
    name = NAME
    doc = "one calibration range for each Concat's inputs and output, so QLinearConcat copies instead of requantizing"

    def __init__(self, max_span_ratio: float = MAX_SPAN_RATIO) -> None:
        self.max_span_ratio = max_span_ratio

    def applies(self, index: GraphIndex) -> bool:
        return "Concat" in index.op_types

    def apply(self, index: GraphIndex, ctx: PassContext) -> list[str]:
        """Widen ``ctx.ranges`` (ORT's ``{"data": {tensor: {"lowest", "highest"}}}``, edited in place) of the
        Concats' members to their union; returns the names of the Concats whose ranges are now shared. An
        input made by an op that takes its input's parameters (nearest Resize, MaxPool) is followed back to
        the tensor whose range counts; Concats sharing a tensor are widened together."""
        data = (ctx.ranges or {}).get("data", {})
        parent: dict[str, str] = {}

        def root(x: str) -> str:
            parent.setdefault(x, x)
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        concats: dict[str, list[str]] = {}  # concat name -> the tensors whose ranges count for it
        for node in index.graph.node:
            if node.op_type != "Concat":
                continue
            members = [node.output[0]]
            for name in node.input:
                members.append(name)
                source = index.producer.get(name)
                while source is not None and source.op_type in PARAMS_FROM_INPUT and source.input:
                    name = source.input[0]
                    members.append(name)
                    source = index.producer.get(name)
            if not all(m in data for m in members):
                continue  # an input left in float or a constant: nothing to share
            concats[node.name or node.output[0]] = members
            for m in members[1:]:
                parent[root(m)] = root(members[0])

        groups: dict[str, list[str]] = {}
        for name, members in concats.items():
            groups.setdefault(root(members[0]), []).append(name)
        shared: list[str] = []
        for names in groups.values():
            members = list(dict.fromkeys(m for n in names for m in concats[n]))
            bounds = [(_range_value(data[m]["lowest"]), _range_value(data[m]["highest"])) for m in members]
            if any(lw is None or h is None for lw, h in bounds):
                continue  # not per-tensor ranges
            lo, hi = min(lw for lw, _ in bounds), max(h for _, h in bounds)
            narrowest = min(h - lw for lw, h in bounds)
            if narrowest <= 0 or (hi - lo) / narrowest > self.max_span_ratio:
                log.debug("Concats %s keep separate ranges (spans differ more than %gx)", names, self.max_span_ratio)
                continue
            for m in members:
                data[m]["lowest"] = {"data": lo, "dtype": "float32", "CLS": "numpy.array"}
                data[m]["highest"] = {"data": hi, "dtype": "float32", "CLS": "numpy.array"}
            shared.extend(names)
        return shared
