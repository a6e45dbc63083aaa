"""Post-training INT8 quantization (Q/DQ ONNX) with cached calibration and an accuracy gate.

Two targets, because the fastest INT8 form differs (docs/benchmarks.md#int8-flavours):

* ``ort``: ONNX Runtime on x86 CPUs fuses only **U8S8** Q/DQ (uint8 activations, int8
  weights) into integer kernels; S8S8 ran dequantize -> FP32 conv -> quantize and was slower
  than FP32. Artifact ``x.int8.onnx``, metadata ``int8_target="ort_cpu"``.
* ``tensorrt``: TensorRT explicit quantization wants symmetric **S8S8** (zero point 0).
  Artifact ``x.int8.trt.onnx``, metadata ``int8_target="tensorrt"``; input to ``onnx_to_engine``.

Calibration ranges are cached in ``x.calib.json`` under a provenance hash (model graph and
weights, pre-processing, the images' pixels, method and its options, target); a cache whose hash
differs is recomputed, never silently reused.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeseg import __version__
from edgeseg.runtime.errors import ExportError, unknown_name
from edgeseg.runtime.fileio import write_json
from edgeseg.runtime.metadata import ModelMeta

from .calibration import CalibrationReader, ImageSet, fill_batch, preprocess
from .onnx_io import get_meta, load_onnx, save_onnx, set_meta
from .passes import PassContext, PassRecord, input_normalizer, passes_meta, run_stage, with_role
from .passes.fold_input_normalization import ROLE_RAW_CAST

log = logging.getLogger("edgeseg.export")

INT8_TARGETS = ("ort", "tensorrt", "openvino")  # openvino: NNCF into OpenVINO IR, export/ov_int8.py
META_TARGET = {"ort": "ort_cpu", "tensorrt": "tensorrt"}  # ModelMeta.int8_target values
CALIB_METHODS = ("minmax", "entropy", "percentile")
CACHE_FORMAT = "edgeseg.calibration"
CALIB_CHUNK = 8  # images per calibrator pass: bounds the activations held in memory at once

# Calibrator options per method. ORT's entropy defaults (128 bins, 128 quantized bins) leave the
# KL search a single candidate, so it returns the MinMax range (a byte-identical model);
# 2048 histogram bins folded to 128 make it a real search, as TensorRT's entropy calibrator does.
METHOD_OPTIONS: dict[str, dict[str, Any]] = {
    "minmax": {},
    "entropy": {"num_bins": 2048, "num_quantized_bins": 128},
    "percentile": {"num_bins": 2048, "percentile": 99.999},
}


@dataclass
class QuantizeResult:
    path: Path
    target: str
    method: str
    calib_images: int
    cache_path: Path | None
    cache_hit: bool
    nodes_in_float: list[str] = field(default_factory=list)
    qdq_nodes: int = 0
    head_in_float: list[str] = field(default_factory=list)  # classifier_tail(), kept float by design
    output_quant: tuple[float, int] | None = None  # (scale, zero point) of uint8 logits; None: float output
    passes: list[PassRecord] = field(default_factory=list)  # every graph pass of this quantization, in order

    def changed(self, name: str) -> list[str]:
        """What pass ``name`` rewrote (summed over the stages it ran in)."""
        return [c for r in self.passes if r.name == name for c in r.changed]

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "target": self.target, "method": self.method,
                "calib_images": self.calib_images, "cache": str(self.cache_path) if self.cache_path else None,
                "cache_hit": self.cache_hit, "nodes_in_float": list(self.nodes_in_float),
                "qdq_nodes": self.qdq_nodes, "head_in_float": list(self.head_in_float),
                "output_quant": list(self.output_quant) if self.output_quant else None,
                "passes": [r.to_dict() for r in self.passes]}


def check_choice(kind: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise unknown_name(kind, value, choices)
    return value


def _graph_hash(proto: onnx.ModelProto) -> str:
    """Hash of the graph (structure and weights), independent of metadata_props."""
    return hashlib.sha256(proto.graph.SerializeToString(deterministic=True)).hexdigest()


def images_sha256(images: Sequence[np.ndarray]) -> str:
    """Hash of the images' pixels (with shape and dtype), in order.

    Pixels, not names: two folders holding ``0001.png`` ... with different frames (or a dataset
    whose files were replaced) must not share calibration ranges.
    """
    h = hashlib.sha256()
    for img in images:
        a = np.ascontiguousarray(img)
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(a)
    return h.hexdigest()


def check_finite_outputs(onnx_path: str | os.PathLike, images: ImageSet, size: tuple[int, int] | None,
                         threads: int = 0) -> None:
    """ExportError naming the first image on which the float model's outputs are NaN or infinite."""
    from . import onnx_io
    from .parity import ort_session, session_batch

    meta = onnx_io.read_meta(onnx_path)
    sess = ort_session(onnx_path, threads)
    name, batch = sess.get_inputs()[0].name, session_batch(sess)
    for i, image in enumerate(images.images):
        x = fill_batch(preprocess([image], meta, size or image.shape[:2]), batch)
        out = sess.run(None, {name: x})[0]
        if out.dtype.kind == "f" and not np.isfinite(out[:1]).all():
            raise ExportError(f"{Path(onnx_path).name} gives NaN or infinite outputs on calibration image "
                              f"{images.ids[i]} ({images.source}); check the model's weights and --mean/--std; "
                              "nothing was written")


def provenance(pre: onnx.ModelProto, meta: ModelMeta, size: tuple[int, int], images: Sequence[np.ndarray],
               method: str, target: str) -> dict[str, Any]:
    """Everything the calibration ranges depend on; its hash decides whether a cache is reusable."""
    import onnxruntime

    return {
        "model_sha256": _graph_hash(pre),
        "mean": list(meta.mean), "std": list(meta.std), "input_size": list(size),
        "input_layout": meta.input_layout,
        "images_sha256": images_sha256(images),
        "num_images": len(images),
        "method": method, "method_options": METHOD_OPTIONS[method],
        "symmetric_activations": target == "tensorrt",
        "target": target,
        "onnxruntime": onnxruntime.__version__,
    }


def prov_hash(prov: dict[str, Any]) -> str:
    """The calibration cache key: a hash of its provenance (model, pre-processing, image pixels)."""
    return hashlib.sha256(json.dumps(prov, sort_keys=True).encode()).hexdigest()


def preprocess_for_quant(onnx_in: str | os.PathLike, out: Path, target: str = "ort",
                         subpixel_head: bool = True, skip_passes: Sequence[str] = ()) -> onnx.ModelProto:
    """ORT's quantization pre-processing (optimise + shape inference), then the graph passes of the
    target's pre-calibration stage (``ort``: :data:`~edgeseg.export.passes.STAGES`, e.g. the classifier's
    bilinear x2 as a quantizable sub-pixel convolution unless ``subpixel_head`` is off), with every node
    named. The passes' records travel in the model's ``metadata_props`` (:data:`PRE_PASSES_KEY`).

    ``skip_symbolic_shape=True``: symbolic shape inference fails on dynamic-shape U-Nets.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(onnx_in), str(out), skip_symbolic_shape=True)
    except Exception as e:
        raise ExportError(f"quantization pre-processing of {onnx_in} failed "
                          f"({str(e).strip().splitlines()[0][:200]})") from None
    pre = onnx.load(str(out))
    skip = [*skip_passes, *([] if subpixel_head else ["subpixel_bilinear_head"])]
    records = run_stage("ort_before_calibration" if target == "ort" else "tensorrt", pre, skip=skip)
    seen: set[str] = set()
    for i, node in enumerate(pre.graph.node):  # nodes_to_exclude works by name: make names unique
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)
    entry = pre.metadata_props.add()
    entry.key, entry.value = PRE_PASSES_KEY, json.dumps([r.to_dict() for r in records])
    onnx.save(pre, str(out))
    return pre


PRE_PASSES_KEY = "edgeseg.passes_before_calibration"  # metadata_props of the pre-processed graph


def _pre_records(pre: onnx.ModelProto) -> list[PassRecord]:
    text = next((p.value for p in pre.metadata_props if p.key == PRE_PASSES_KEY), "[]")
    return [PassRecord(d["name"], d["stage"], list(d["changed"]), bool(d["disabled"])) for d in json.loads(text)]


def calibrate(pre_path: Path, reader: CalibrationReader, method: str, target: str, workdir: Path) -> dict:
    """Run ORT's calibrator over ``reader`` in chunks; return the ranges as ORT's JSON-ready dict."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import CalibrationCacheEncoder, create_calibrator
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    ort_method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[method]
    options = dict(METHOD_OPTIONS[method])
    options["symmetric"] = target == "tensorrt"  # zero point 0 for TensorRT; full uint8 range for ORT
    calibrator = create_calibrator(pre_path, sorted(set(QLinearOpsRegistry) | set(QDQRegistry)),
                                   augmented_model_path=str(workdir / "augmented.onnx"),
                                   calibrate_method=ort_method, extra_options=options)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print progress chatter
            for chunk in reader.chunks(CALIB_CHUNK):
                calibrator.collect_data(chunk)
            ranges = calibrator.compute_data()
    finally:
        del calibrator
    return json.loads(json.dumps(ranges.to_dict(), cls=CalibrationCacheEncoder))


def read_cache(path: Path, want_hash: str, fmt: str, key: str, prov: dict[str, Any] | None = None,
               what: str = "calibration cache") -> dict | None:
    """The JSON of the cache at ``path`` when it is a ``fmt`` file holding ``key`` made under ``want_hash``;
    None otherwise, with a warning that says why when a file is there (unreadable, another format, or
    which provenance facts changed)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        log.warning("%s %s is unreadable; recalibrating", what, path)
        return None
    if not isinstance(data, dict) or data.get("format") != fmt or key not in data:
        log.warning("%s is not an edgeseg %s; recalibrating and overwriting it", path, what)
        return None
    if data.get("hash") != want_hash:
        old = data.get("provenance") or {}
        changed = sorted(k for k in set(old) | set(prov or {}) if old.get(k) != (prov or {}).get(k))
        log.warning("%s %s was made for a different %s; recalibrating", what, path, ", ".join(changed) or "provenance")
        return None
    return data


def load_cache(path: Path, want_hash: str, prov: dict[str, Any] | None = None) -> dict | None:
    """The cached ranges when ``path`` holds ranges for ``want_hash``; None (with a message) otherwise."""
    data = read_cache(path, want_hash, CACHE_FORMAT, "ranges", prov)
    return None if data is None else data["ranges"]


def quantize_onnx(onnx_in: str | os.PathLike, onnx_out: str | os.PathLike, *,
                  calib: ImageSet | CalibrationReader, method: str = "minmax", target: str = "ort",
                  per_channel: bool = True, cache_path: str | os.PathLike | None = None,
                  nodes_to_exclude: Sequence[str] = (), float_head: bool | None = None,
                  float_logits: bool = False, skip_passes: Sequence[str] = (),
                  _pre: tuple[Path, onnx.ModelProto] | None = None) -> QuantizeResult:
    """Quantize an edgeseg FP32 ONNX into a Q/DQ INT8 ONNX for ``target`` (``ort`` or ``tensorrt``).

    ``calib``: the calibration images (pre-processed here with the artifact's metadata) or a
    ready :class:`CalibrationReader`. ``cache_path`` (e.g. ``x.calib.json``) caches the ranges.
    ``nodes_to_exclude`` stay in float (the accuracy gate fills it). ``float_head`` keeps the
    classifier conv and what follows it in float (:func:`classifier_tail`); default: on for
    the ``ort`` target when the graph still resizes the logits after the classifier (a bilinear x2
    after a 1x1 classifier becomes a quantizable sub-pixel convolution first unless ``float_head``
    is True, see :func:`preprocess_for_quant`), off otherwise (see :func:`resizes_logits`) and off
    for ``tensorrt``. An ``ort`` graph that ends quantized outputs uint8 logits with their scale and
    zero point in ``meta.output_quant`` (:func:`end_in_quantized_logits`) unless ``float_logits``.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    check_choice("calibration method", method, CALIB_METHODS)
    check_choice("INT8 target", target, INT8_TARGETS)
    if target == "openvino":
        raise ExportError("the openvino INT8 flavour is an NNCF-quantized OpenVINO IR: make it with "
                          "edgeseg.export.ov_int8.quantize_for_openvino (or quantize_with_gate(..., target='openvino'))")
    proto = load_onnx(onnx_in)
    meta = get_meta(proto, str(onnx_in))
    if meta.precision != "fp32":
        raise ExportError(f"{onnx_in} is {meta.precision}; quantize the FP32 ONNX instead")
    size = meta.input_size
    if size is None:
        raise ExportError(f"{onnx_in} has no input size in its metadata; re-export it with --imgsz")
    reader = calib if isinstance(calib, CalibrationReader) else CalibrationReader(calib, meta, size)
    ids = list(calib.ids) if isinstance(calib, ImageSet) else [f"array{i}:{_array_id(a)}"
                                                              for i, a in enumerate(reader.images)]

    with tempfile.TemporaryDirectory(prefix="edgeseg-int8-") as tmp:
        work = Path(tmp)
        if _pre is None:
            pre_path = work / "pre.onnx"
            pre = preprocess_for_quant(onnx_in, pre_path, target, subpixel_head=float_head is not True,
                                       skip_passes=skip_passes)
        else:
            pre_path, pre = _pre
        tail = classifier_tail(pre)
        keep_head = (target == "ort" and resizes_logits(pre, tail)) if float_head is None else float_head
        head = tail if keep_head else []
        in_float = list(dict.fromkeys([*input_preprocessing(pre), *head, *nodes_to_exclude]))
        prov = provenance(pre, meta, size, reader.images, method, target)
        digest = prov_hash(prov)
        cache = Path(cache_path) if cache_path else None
        ranges = load_cache(cache, digest, prov) if cache else None
        hit = ranges is not None
        if ranges is None:
            if isinstance(calib, ImageSet):  # NaN outputs would become NaN ranges, then a broken model
                check_finite_outputs(onnx_in, calib, size)
            log.info("calibrating %s on %d images (%s, target %s)", Path(onnx_in).name, len(reader.images),
                     method, target)
            ranges = calibrate(pre_path, reader, method, target, work)
            if cache:
                write_json(cache, {"format": CACHE_FORMAT, "hash": digest, "provenance": prov,
                                   "image_ids": ids, "ranges": ranges})
        # The cache keeps the calibrated ranges; layout choices for ONNX Runtime apply on a copy.
        ranges = copy.deepcopy(ranges)
        records = _pre_records(pre)
        if target == "ort":
            records += run_stage("ort_ranges", pre, skip=skip_passes, ctx=PassContext(ranges=ranges))
        for cast in with_role(pre, ROLE_RAW_CAST):  # the uint8 frame: scale 1, zero point 0 hold it exactly
            ranges["data"][cast.output[0]] = {"lowest": 0.0, "highest": 255.0}
        ort_cache = work / "ranges.json"
        ort_cache.write_text(json.dumps({**ranges, "smooth_quant": False}), encoding="utf-8")

        act_type = QuantType.QInt8 if target == "tensorrt" else QuantType.QUInt8
        extra = {"ActivationSymmetric": target == "tensorrt", "WeightSymmetric": True}
        q_path = work / "q.onnx"
        ort_method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                      "percentile": CalibrationMethod.Percentile}[method]
        try:
            with _quiet_quant_logs():
                quantize_static(str(pre_path), str(q_path), calibration_data_reader=None,
                                calibration_cache_path=str(ort_cache), quant_format=QuantFormat.QDQ,
                                per_channel=per_channel, activation_type=act_type, weight_type=QuantType.QInt8,
                                calibrate_method=ort_method, nodes_to_exclude=in_float,
                                extra_options=extra)
        except Exception as e:
            raise ExportError(f"INT8 quantization of {onnx_in} failed ({str(e).strip().splitlines()[0][:200]})"
                              ) from None
        qproto = onnx.load(str(q_path))

    qdq = sum(1 for n in qproto.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear"))
    if qdq == 0:
        raise ExportError(f"INT8 quantization of {onnx_in} inserted no Q/DQ nodes; the model has no "
                          "quantizable layers (Conv/MatMul)")
    # TensorRT places Q/DQ and picks layouts itself: its stage is empty.
    skip = [*skip_passes, *(["end_in_quantized_logits"] if float_logits else [])]
    ctx = PassContext()
    records += run_stage("ort_after_qdq" if target == "ort" else "tensorrt", qproto, skip=skip, ctx=ctx)
    output_quant = ctx.output_quant
    done = passes_meta(records)
    extra_meta = {**dict(meta.extra), "calib_method": method, "calib_images": str(len(reader.images)),
                  "calib_hash": digest, "per_channel": str(per_channel).lower(),
                  "activations": "int8 symmetric" if target == "tensorrt" else "uint8 asymmetric",
                  "weights": "int8 symmetric", "nodes_in_float": ",".join(nodes_to_exclude),
                  "head_in_float": ",".join(head),
                  **{k: ",".join(filter(None, [meta.extra.get(k, ""), v])) for k, v in done.items()}}
    set_meta(qproto, meta.with_(precision="int8", int8_target=META_TARGET[target], edgeseg_version=__version__,
                                output_quant=output_quant, extra=extra_meta))
    try:
        onnx.checker.check_model(qproto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"INT8 model from {onnx_in} fails onnx.checker: {str(e).splitlines()[0]}") from None
    out = save_onnx(qproto, onnx_out)
    return QuantizeResult(path=out, target=target, method=method, calib_images=len(reader.images),
                          cache_path=cache, cache_hit=hit, nodes_in_float=list(nodes_to_exclude), qdq_nodes=qdq,
                          head_in_float=head, output_quant=output_quant, passes=records)


# Ops that may sit between the classifier conv and a graph output without weights of their own.
TAIL_OPS = ("Resize", "Upsample", "Slice", "ArgMax", "Cast", "Identity", "Transpose", "Reshape", "Squeeze",
            "Unsqueeze")


def classifier_tail(proto: onnx.ModelProto) -> list[str]:
    """Names of the last Conv before each output and the weightless ops after it (resize, crop, argmax).

    Kept in float for ONNX Runtime when it resizes the logits (:func:`resizes_logits`): the
    classifier's output is dequantized for the bilinear resize anyway, and in float ONNX Runtime
    runs conv + resize in its blocked layout, while the logits keep full precision.
    Returns [] when an output is not reached that way (nothing is then kept in float).
    """
    producer = {o: n for n in proto.graph.node for o in n.output}
    names: list[str] = []
    for out in proto.graph.output:
        node, chain = producer.get(out.name), []
        while node is not None and node.op_type in TAIL_OPS:
            chain.append(node.name)
            node = producer.get(node.input[0])
        if node is None or node.op_type not in ("Conv", "ConvTranspose"):
            return []
        chain.append(node.name)
        names += [n for n in chain if n not in names]
    return names


def resizes_logits(proto: onnx.ModelProto, tail: Sequence[str]) -> bool:
    """Whether the classifier tail upsamples the logits (a full-resolution export).

    Only then does a float classifier pay on ONNX Runtime: it runs conv + bilinear resize in its
    blocked float layout; without a resize (an ``--output-stride`` export) the quantized classifier is
    faster and scores no lower (docs/export.md#graph-forms-for-speed).
    """
    ops = {n.name: n.op_type for n in proto.graph.node}
    return any(ops.get(name) in ("Resize", "Upsample") for name in tail)


# Ops a fused pre-processing block is made of (BGR->RGB slice, HWC->CHW transpose, cast, scale, shift).
PREPROCESS_OPS = ("Slice", "Gather", "Transpose", "Cast", "Mul", "Add", "Sub", "Div", "Identity", "Reshape",
                  "Unsqueeze", "Concat")


def input_preprocessing(proto: onnx.ModelProto) -> list[str]:
    """Names of the nodes that turn a fused-preprocessing graph's uint8 frame into the normalised image:
    the weightless ones before the first Conv and, in edgeseg's own exports, that 1x1 normalising Conv
    (:func:`~edgeseg.export.passes.input_normalizer`). They stay float.

    Quantized, ONNX Runtime runs such element-wise normalisation slower than in float, and rounding the
    normalised image gains nothing.
    For the ``ort`` target with static shapes the normalising Conv is folded away first
    (the ``fold_input_normalization`` pass).
    """
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    initializers = {i.name for i in proto.graph.initializer}
    reached = [i.name for i in proto.graph.input if i.name not in initializers]
    names: list[str] = []
    while reached:
        for node in consumers.get(reached.pop(), []):
            if node.op_type in PREPROCESS_OPS and node.name not in names:
                names.append(node.name)
                reached.extend(node.output)
    norm = input_normalizer(proto)
    if norm is not None:  # raw 0..255 in, normalised out: exact in float; quantized it is slower
        names.append(norm.name)
    return names


def _array_id(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


@contextlib.contextmanager
def _quiet_quant_logs() -> Iterator[None]:
    """quantize_static logs a "consider pre-processing" warning (done already) on the root logger: raise
    the root level for the call only, so the application's own warnings are not silenced afterwards."""
    root = logging.getLogger()
    before = root.level
    root.setLevel(max(before, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(before)


# -- per-node sensitivity and the accuracy gate ---------------------------------------------------

def node_sensitivity(pre_path: Path, qdq_path: Path, reader: CalibrationReader, workdir: Path) -> list[str]:
    """Quantizable nodes ordered from most to least damaged by quantization.

    Uses ONNX Runtime's QDQ debugging tools: each quantized activation's signal-to-quantization-
    noise ratio (SQNR, dB) between its value before and after its own Q/DQ pair (the local error),
    attributed to the node that produces the tensor. Lower SQNR = more sensitive.
    """
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    aug_f, aug_q = workdir / "aug_float.onnx", workdir / "aug_qdq.onnx"
    modify_model_output_intermediate_tensors(str(pre_path), str(aug_f))
    modify_model_output_intermediate_tensors(str(qdq_path), str(aug_q))
    cpu = ["CPUExecutionProvider"]
    float_acts = collect_activations(str(aug_f), reader.feeds(), execution_providers=cpu)
    qdq_acts = collect_activations(str(aug_q), reader.feeds(), execution_providers=cpu)
    errors = compute_activation_error(create_activation_matching(qdq_acts, float_acts))
    pre = onnx.load(str(pre_path))
    producer = {out: node.name for node in pre.graph.node for out in node.output}
    consumers: dict[str, list[str]] = {}
    for node in pre.graph.node:
        for inp in node.input:
            consumers.setdefault(inp, []).append(node.name)
    scored: dict[str, float] = {}
    for tensor, err in errors.items():
        sqnr = float(err.get("qdq_err", np.inf))
        # A badly quantized tensor hurts through its producer's output and its consumers' inputs.
        for name in [producer.get(tensor)] + consumers.get(tensor, []):
            if name:
                scored[name] = min(scored.get(name, np.inf), sqnr)
    return [n for n, _ in sorted(scored.items(), key=lambda kv: kv[1])]
