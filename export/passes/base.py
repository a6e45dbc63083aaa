"""What every graph pass shares: the :class:`Pass` protocol, the per-run :class:`GraphIndex`, the marker
on the nodes a pass creates, and small ONNX helpers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import onnx
from onnx import helper, numpy_helper

# Every node a pass creates carries NodeProto.metadata_props {PASS_KEY: pass name}; the few nodes a later
# pass looks for also carry {ROLE_KEY: role}. ONNX Runtime and TensorRT ignore node metadata.
PASS_KEY = "edgeseg.pass"
ROLE_KEY = "edgeseg.role"


class GraphIndex:
    """One model's lookup tables, shared by every pass of a run.

    ``producer``/``consumers``/``inits`` are rebuilt by :meth:`refresh` (one linear walk) after a pass
    changed the graph. Shapes come from one ONNX shape inference, run when a pass first asks for one;
    passes record the shapes of tensors they create (:meth:`set_shape`) and forget those they remove or
    reshape (:meth:`forget`), so later passes of the run need no second inference.
    """

    def __init__(self, proto: onnx.ModelProto) -> None:
        self.proto = proto
        self.graph = proto.graph
        self._dims: dict[str, list[int | None]] | None = None
        self.refresh()

    def refresh(self) -> None:
        g = self.graph
        self.inits: dict[str, onnx.TensorProto] = {t.name: t for t in g.initializer}
        self.producer: dict[str, onnx.NodeProto] = {o: n for n in g.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}  # once per input slot
        for n in g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in g.output}
        self.op_types = {n.op_type for n in g.node}

    @property
    def dims(self) -> dict[str, list[int | None]]:
        """Tensor name -> its dims (None where symbolic or unknown), from one shape inference."""
        if self._dims is None:
            g = onnx.shape_inference.infer_shapes(self.proto).graph
            self._dims = {}
            for v in [*g.input, *g.value_info, *g.output]:
                if v.type.tensor_type.HasField("shape"):
                    self._dims[v.name] = [d.dim_value if d.HasField("dim_value") else None
                                          for d in v.type.tensor_type.shape.dim]
        return self._dims

    def static_shape(self, name: str) -> list[int] | None:
        dims = self.dims.get(name)
        if not dims or any(d is None or d <= 0 for d in dims):
            return None
        return list(dims)

    def set_shape(self, name: str, dims: Iterable[int]) -> None:
        self.dims[name] = [int(d) for d in dims]

    def forget(self, names: set[str]) -> None:
        """Drop the shape annotations of ``names`` (tensors a pass removed or reshaped)."""
        keep = [v for v in self.graph.value_info if v.name not in names]
        del self.graph.value_info[:]
        self.graph.value_info.extend(keep)
        if self._dims is not None:
            for n in names:
                self._dims.pop(n, None)

    def drop_initializers(self, names: set[str]) -> None:
        """Remove the initializers among ``names`` that no node reads any more."""
        g = self.graph
        used = {i for n in g.node for i in n.input}
        for t in [t for t in g.initializer if t.name in names and t.name not in used]:
            g.initializer.remove(t)

    def int64(self, name: str, values: list[int]) -> str:
        """A new int64 initializer ``name`` holding ``values``; returns its name."""
        self.graph.initializer.append(numpy_helper.from_array(np.array(values, np.int64), name))
        return name

    def set_nodes(self, nodes: Iterable[onnx.NodeProto]) -> None:
        """Make ``nodes`` the graph's node list (a pass's rewritten list; the lookup tables wait for :meth:`refresh`)."""
        set_nodes(self.graph, nodes)

    def sort(self) -> None:
        topological_sort(self.graph)


@dataclass
class PassContext:
    """What a run hands its passes besides the graph, and what passes hand back besides their names."""

    ranges: dict[str, Any] | None = None  # ORT calibration ranges (the ``ranges`` stage edits them)
    output_quant: tuple[float, int] | None = None  # set by end_in_quantized_logits
    notes: dict[str, Any] = field(default_factory=dict)


class Pass(Protocol):
    """A graph rewrite: ``applies`` is a cheap look at the op types, ``apply`` edits the graph in place
    and returns the names of what it rewrote (empty: nothing matched; the graph is unchanged)."""

    name: ClassVar[str]
    doc: ClassVar[str]  # one line: what it does and why it pays

    def applies(self, index: GraphIndex) -> bool: ...

    def apply(self, index: GraphIndex, ctx: PassContext) -> list[str]: ...


def make_node(pass_name: str, op_type: str, inputs: list[str], outputs: list[str], *, name: str,
              role: str | None = None, **attrs: Any) -> onnx.NodeProto:
    """``helper.make_node`` plus the marker of the pass that made it."""
    node = helper.make_node(op_type, inputs, outputs, name=name, **attrs)
    mark(node, pass_name, role)
    return node


def mark(node: onnx.NodeProto, pass_name: str, role: str | None = None) -> None:
    for key in (PASS_KEY, ROLE_KEY):
        for p in [p for p in node.metadata_props if p.key == key]:
            node.metadata_props.remove(p)
    entry = node.metadata_props.add()
    entry.key, entry.value = PASS_KEY, pass_name
    if role:
        entry = node.metadata_props.add()
        entry.key, entry.value = ROLE_KEY, role


def role_of(node: onnx.NodeProto) -> str | None:
    return next((p.value for p in node.metadata_props if p.key == ROLE_KEY), None)


def with_role(proto: onnx.ModelProto, role: str) -> list[onnx.NodeProto]:
    """The nodes a pass marked with ``role`` (see :data:`ROLE_KEY`)."""
    return [n for n in proto.graph.node if role_of(n) == role]


def attr(node: onnx.NodeProto, name: str, default: object) -> object:
    for a in node.attribute:
        if a.name == name:
            v = helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def const_scales(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> tuple[float, ...] | None:
    """A Resize's constant scales, or None when it is given sizes or computed scales."""
    if len(node.input) < 3 or node.input[2] not in inits or (len(node.input) > 3 and node.input[3]):
        return None
    return tuple(float(s) for s in numpy_helper.to_array(inits[node.input[2]]).ravel())


def is_per_tensor(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> bool:
    """A Q/DQ node with a constant scalar scale (and zero point)."""
    return all(name in inits and numpy_helper.to_array(inits[name]).size == 1 for name in node.input[1:3])


def per_tensor_params(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> tuple[float, int, int] | None:
    """(scale, zero point, zero point's ONNX type) of a per-tensor Q/DQ node that names its zero point."""
    if len(node.input) < 3 or not is_per_tensor(node, inits):
        return None
    scale, zero = (numpy_helper.to_array(inits[n]).ravel()[0] for n in node.input[1:3])
    return float(scale), int(zero), inits[node.input[2]].data_type


def pointwise_conv(node: onnx.NodeProto | None, inits: dict[str, onnx.TensorProto]) -> bool:
    """A plain 1x1 Conv with constant weights (and bias): stride 1, no padding, one group."""
    if node is None or node.op_type != "Conv" or node.input[1] not in inits:
        return False
    if len(node.input) > 2 and node.input[2] and node.input[2] not in inits:
        return False
    return (tuple(inits[node.input[1]].dims[2:]) == (1, 1) and attr(node, "group", 1) == 1
            and attr(node, "auto_pad", "NOTSET") == "NOTSET" and not any(attr(node, "pads", []))
            and set(attr(node, "strides", [1])) == {1} and set(attr(node, "dilations", [1])) == {1})


def topological_sort(g: onnx.GraphProto) -> None:
    """Reorder ``g.node`` so every node follows its inputs' producers (ONNX requires it)."""
    ready = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    pending: list[onnx.NodeProto] = list(g.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        waiting = []
        for n in pending:
            if all(i in ready for i in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                waiting.append(n)
        if len(waiting) == len(pending):
            raise ValueError(f"graph has a cycle or a missing input near node {waiting[0].name!r}")
        pending = waiting
    set_nodes(g, ordered)


def set_nodes(g: onnx.GraphProto, nodes: Iterable[onnx.NodeProto]) -> None:
    """Replace ``g.node`` with ``nodes`` (protobuf lists take no slice assignment)."""
    nodes = list(nodes)  # ``nodes`` may be a view of g.node itself
    del g.node[:]
    g.node.extend(nodes)
