"""OpenVINO backend: edgeseg ONNX files and OpenVINO IR (``.xml`` + ``.bin``) on CPU, GPU, NPU or AUTO.

openvino is imported when this backend is constructed (extra ``openvino``). OpenVINO compiles
the same ONNX the ONNX Runtime backend runs; an IR written by ``edgeseg export --int8-target
openvino`` carries edgeseg's metadata in its ``rt_info`` under ``edgeseg``, and an ONNX file's
``metadata_props`` arrive in ``rt_info`` under ``framework``.

Settings, chosen for one camera stream on a small shared CPU:

* ``PERFORMANCE_HINT=LATENCY`` (one stream: every call gets all inference threads) unless
  ``hint="throughput"`` (several streams, for many workers or batches);
* ``INFERENCE_NUM_THREADS=threads`` when given;
* ``ENABLE_CPU_PINNING=False`` unless ``pin=True``: the inference threads share the cores with the
  capture, post-processing and rendering threads, and pinned threads of two processes land on the
  same cores (Intel's knowledge base describes inference time doubling that way). The ONNX Runtime
  backend turns worker spinning off for the same reason.
* the inference precision is OpenVINO's choice unless ``precision_hint`` is given: on CPUs with
  bfloat16 units (AVX512-BF16, AMX) OpenVINO runs float models in bfloat16, elsewhere in float32.
  ``precision_hint="f32"`` runs them exactly; ``describe()`` reports what was used.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, ModelFormatError, UsageError, first_line
from ..metadata import PREFIX, ModelMeta
from .base import Backend, as_float_logits, io_facts, read_meta

log = logging.getLogger("edgeseg.runtime")

INSTALL_HINT = "pip install 'edgeseg[openvino]'"
RT_INFO_SECTION = "edgeseg"  # where an edgeseg IR keeps its metadata (ModelMeta.to_props keys, without prefix)
ONNX_RT_INFO_SECTION = "framework"  # where OpenVINO's ONNX reader puts metadata_props
# An edgeseg IR's .xml records its .bin's sha256 here: the pair is written as two renames, and a .bin from
# another write (an interrupted export, a mixed copy) would otherwise load silently with the wrong weights.
WEIGHTS_HASH_KEY = ["edgeseg_files", "weights_sha256"]
SUFFIXES = (".onnx", ".xml")
HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
META_DEVICES = ("AUTO", "MULTI", "HETERO")  # virtual devices that pick among the real ones
ORT_FLAVOUR = "ort_cpu"  # ModelMeta.int8_target of ONNX Runtime's U8S8 INT8 artifact


def import_openvino() -> Any:
    """The ``openvino`` module, or one line naming the extra to install."""
    try:
        import openvino
    except ImportError:
        raise BackendUnavailableError(f"OpenVINO is not installed; {INSTALL_HINT}") from None
    return openvino


def devices(core: Any = None) -> list[str]:
    """OpenVINO devices present here (e.g. ``["CPU", "GPU.0", "NPU"]``); [] without openvino."""
    try:
        core = core or import_openvino().Core()
    except BackendUnavailableError:
        return []
    return list(core.available_devices)


def device_names(core: Any = None) -> dict[str, str]:
    """Device -> its full name (``{"CPU": "Intel(R) Core(TM) i7 ..."}``), for ``edgeseg info``."""
    core = core or import_openvino().Core()
    out = {}
    for d in core.available_devices:
        try:
            out[d] = str(core.get_property(d, "FULL_DEVICE_NAME"))
        except RuntimeError:  # a plugin that cannot answer still counts as present
            out[d] = d
    return out


def resolve_device(device: str, present: Sequence[str]) -> str:
    """``"cpu"`` / ``"GPU"`` / ``"GPU.1"`` / ``"AUTO"`` / ``"AUTO:GPU,CPU"`` -> OpenVINO's name, checked
    against the devices ``present``; an unknown or absent device raises naming those that are."""
    name = str(device).strip().upper()
    listed = ", ".join(present) or "none"
    if not name:
        raise UsageError(f"OpenVINO device must not be empty; devices here: {listed}")
    kind, _, rest = name.partition(":")
    if kind in META_DEVICES:
        for d in filter(None, rest.split(",")):
            resolve_device(d, present)
        return name
    if name in present or any(p.split(".")[0] == name for p in present):
        return name
    if name.split(".")[0] in ("CPU", "GPU", "NPU"):
        raise BackendUnavailableError(f"OpenVINO device {device!r} is not present here; devices here: {listed} "
                                      "(GPU and NPU need Intel's drivers, see docs/openvino.md)")
    raise UsageError(f"OpenVINO device {device!r} does not exist; devices here: {listed} "
                     f"(or {', '.join(META_DEVICES[:1])} to let OpenVINO choose)")


def read_props(model: Any) -> dict[str, str]:
    """edgeseg metadata of an ``openvino.Model`` as ``edgeseg.*`` string properties.

    An IR's own ``edgeseg`` section wins over ``framework`` (what it inherited from the ONNX it was made
    from, e.g. the FP32 facts of a model later quantized).
    """
    props: dict[str, str] = {}
    if model.has_rt_info([ONNX_RT_INFO_SECTION]):
        section = model.get_rt_info([ONNX_RT_INFO_SECTION]).astype(dict)
        props.update({k: v.astype(str) for k, v in section.items() if k.startswith(PREFIX)})
    if model.has_rt_info([RT_INFO_SECTION]):
        section = model.get_rt_info([RT_INFO_SECTION]).astype(dict)
        props.update({PREFIX + k: v.astype(str) for k, v in section.items()})
    return props


def check_weights(model: Any, xml: Path) -> None:
    """ModelFormatError when an IR's .xml records a weights hash its .bin does not have."""
    if xml.suffix.lower() != ".xml" or not model.has_rt_info(WEIGHTS_HASH_KEY):
        return
    from ..fileio import sha256_file

    if sha256_file(xml.with_suffix(".bin")) != model.get_rt_info(WEIGHTS_HASH_KEY).astype(str):
        raise ModelFormatError(f"{xml.with_suffix('.bin').name} does not belong to {xml.name}: its weights differ "
                               "from those the .xml was written with (an interrupted export or a mixed copy); "
                               "copy the .xml and .bin of one export together, or export again")


def write_props(model: Any, meta: ModelMeta) -> None:
    """Store ``meta`` in an ``openvino.Model``'s rt_info (saved with the IR by ``openvino.save_model``)."""
    for key, value in meta.to_props().items():
        model.set_rt_info(value, [RT_INFO_SECTION, key[len(PREFIX):]])


class OpenVinoBackend(Backend):
    """Runs a ``.onnx`` or ``.xml`` (IR) file with OpenVINO.

    Options: ``threads`` (CPU inference threads; None = OpenVINO's default), ``hint`` ("latency" or
    "throughput"), ``pin`` (pin CPU threads to cores), ``precision_hint`` (e.g. "f32"; None = OpenVINO's
    choice), and for a model without edgeseg metadata ``classes`` (+ optional ``palette``, ``mean``,
    ``std``) given by hand.
    """

    name = "openvino"
    # One compiled model, one infer request per calling thread (requests are not thread-safe, the
    # compiled model is); infer() returns fresh arrays, so results may travel to other threads.
    concurrent_runs = True
    fresh_outputs = True  # share_outputs is off: each infer returns a new array

    def __init__(self, path: str | Path, device: str = "CPU", *, threads: int | None = None,
                 hint: str = "latency", pin: bool = False, precision_hint: str | None = None,
                 classes: Sequence[str] | None = None, palette: Sequence[Sequence[int]] | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 **options: Any) -> None:
        super().__init__(path, device, threads=threads, hint=hint, pin=pin, **options)
        ov = import_openvino()
        self._ov = ov
        if self.path.suffix.lower() not in SUFFIXES:
            raise ModelFormatError(f"OpenVINO runs .onnx files and OpenVINO IR (.xml with its .bin); got {self.path}")
        if not self.path.is_file():
            raise ModelFormatError(f"model file {self.path} does not exist")
        if self.path.suffix.lower() == ".xml" and not self.path.with_suffix(".bin").is_file():
            raise ModelFormatError(f"{self.path} has no weights file {self.path.with_suffix('.bin').name} beside it; "
                                   "copy the .xml and .bin together")
        if threads is not None and threads < 0:
            raise UsageError(f"threads={threads} must be 0 (library default) or a positive number")
        if hint not in HINTS:
            raise UsageError(f"hint {hint!r} must be one of {', '.join(HINTS)}")
        core = ov.Core()
        self.device = resolve_device("CPU" if str(device).lower() == "cpu" else device, devices(core))
        try:
            model = core.read_model(str(self.path))
        except RuntimeError as e:
            first = first_line(e)
            raise ModelFormatError(f"{self.path} is not a model OpenVINO can read ({first}); "
                                   "re-export it with 'edgeseg export'") from None
        check_weights(model, self.path)
        if len(model.inputs) != 1:
            raise ModelFormatError(f"{self.path} has {len(model.inputs)} inputs; an edgeseg model takes one image batch")
        self.input_shape = _dims(model.inputs[0])
        self.output_shape = _dims(model.outputs[0])
        self.input_dtype = np.dtype(model.inputs[0].get_element_type().to_dtype())
        if len(self.input_shape) != 4:
            raise ModelFormatError(f"{self.path} input has shape {self.input_shape}; expected 4 dimensions "
                                   "(N, 3, H, W) or (N, H, W, 3)")
        if self.device.split(".")[0] == "NPU" and None in self.input_shape:
            # OpenVINO's device support table: the NPU plugin does not take dynamic shapes.
            raise UsageError(f"{self.path.name} has a dynamic input shape {self.input_shape}, which OpenVINO's NPU "
                             "device does not take; export it with a fixed size (no --dynamic) for the NPU")
        self.meta = self._read_meta(read_props(model), classes, palette, mean, std)
        if self.meta.precision == "int8" and self.meta.int8_target == ORT_FLAVOUR:
            log.warning("%s is the ONNX Runtime INT8 flavour (uint8 activations), a slower INT8 form on OpenVINO "
                        "than OpenVINO's own (bundled: camvid-unet-lite-s2.int8.ov); make that with 'edgeseg export "
                        "x.onnx --precision int8 --int8-target openvino --output-stride 2' (or run this file on "
                        "ONNX Runtime, where it is fastest)", self.path.name)
        self.threads, self.hint, self.pin, self.precision_hint = threads, hint, pin, precision_hint
        try:
            self.compiled = core.compile_model(model, self.device, self._config())
        except RuntimeError as e:
            first = first_line(e)
            raise BackendUnavailableError(f"OpenVINO could not compile {self.path.name} for {self.device} "
                                          f"({first})") from None
        self._local = threading.local()

    def _config(self) -> dict[str, Any]:
        """Compile properties: the hint everywhere, thread count and pinning on CPU only."""
        cfg: dict[str, Any] = {"PERFORMANCE_HINT": HINTS[self.hint]}
        if self.precision_hint:
            cfg["INFERENCE_PRECISION_HINT"] = self.precision_hint
        if self.device.split(".")[0] == "CPU":
            cfg["ENABLE_CPU_PINNING"] = bool(self.pin)
            if self.threads:
                cfg["INFERENCE_NUM_THREADS"] = int(self.threads)
        return cfg

    # -- metadata --------------------------------------------------------------------------------
    def _read_meta(self, props: dict[str, str], classes: Sequence[str] | None,
                   palette: Sequence[Sequence[int]] | None, mean: Sequence[float] | None,
                   std: Sequence[float] | None) -> ModelMeta:
        facts = io_facts(self.input_shape, self.input_dtype, self.output_shape)
        try:
            return read_meta(props, self.path, facts, classes=classes, palette=palette, mean=mean, std=std)
        except ModelFormatError:
            if classes is None and self.path.suffix.lower() == ".xml":
                raise ModelFormatError(
                    f"{self.path} has no edgeseg metadata in its rt_info; make the IR with 'edgeseg export "
                    "--precision int8 --int8-target openvino' (or edgeseg.export.ov_int8.save_ir), or give "
                    "the classes by hand: Segmenter(..., classes=[...])") from None
            raise

    # -- Backend ---------------------------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        if batch.dtype != self.input_dtype:
            batch = batch.astype(self.input_dtype)
        out = request.infer({0: batch})[0]  # a fresh array (share_outputs is off)
        return as_float_logits(out, self.meta)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({
            "openvino": self._ov.__version__.split("-")[0],
            "available_devices": devices(),
            "threads": self.threads,
            "hint": self.hint,
            "pin": self.pin,
            "providers": [f"OpenVINO {self.device}"],
            "inputs": [_io_dict(p) for p in self.compiled.inputs],
            "outputs": [_io_dict(p) for p in self.compiled.outputs],
        })
        for key in ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "EXECUTION_DEVICES"):
            try:
                value = self.compiled.get_property(key)
            except RuntimeError:  # not every device (or AUTO) reports every property
                continue
            if hasattr(value, "get_type_name"):  # an element type: "bf16", "f32"
                value = value.get_type_name()
            d[key.lower()] = value if isinstance(value, (int, list)) else str(value)
        return d

    def close(self) -> None:
        self.__dict__.pop("compiled", None)
        self._local = threading.local()


def _dims(port: Any) -> tuple[int | None, ...]:
    return tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())


def _io_dict(port: Any) -> dict[str, Any]:
    names = port.get_names()
    return {"name": sorted(names)[0] if names else "?",
            "shape": [d if d is not None else "?" for d in _dims(port)],
            "dtype": str(np.dtype(port.get_element_type().to_dtype()))}
