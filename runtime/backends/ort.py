"""ONNX Runtime backend: CPU, CUDA and TensorRT execution providers.

onnxruntime is imported when this backend is constructed, not when the runtime is
imported. Metadata comes from the model's ``metadata_props`` as onnxruntime exposes
them (``custom_metadata_map``), so the runtime never needs the ``onnx`` package.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, ModelFormatError, UsageError, first_line
from ..metadata import LAYOUT_UINT8, OUTPUT_LOGITS
from .base import Backend, as_float_logits, io_facts, read_meta

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
TRT_EP = "TensorrtExecutionProvider"
# Short names accepted in ``providers=`` (and by the CLI) for the full ORT names.
PROVIDER_ALIASES = {"cpu": CPU_EP, "cuda": CUDA_EP, "tensorrt": TRT_EP, "trt": TRT_EP}
_INSTALL_HINT = {
    CUDA_EP: "install onnxruntime-gpu ('pip install edgeseg[gpu]') on a machine with an NVIDIA GPU",
    TRT_EP: "install onnxruntime-gpu and TensorRT ('pip install edgeseg[gpu,trt]') on a machine with an NVIDIA GPU",
}
# ONNX tensor type strings as onnxruntime reports them -> numpy dtypes.
_ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}


def parse_device(device: str) -> tuple[str, int]:
    """``"cpu"`` -> ("cpu", 0); ``"cuda"`` / ``"cuda:1"`` / ``"0"`` -> ("cuda", index)."""
    d = str(device).strip().lower()
    if d == "cpu":
        return "cpu", 0
    if d.isdigit():
        return "cuda", int(d)
    if d == "cuda" or d == "gpu":
        return "cuda", 0
    if d.startswith("cuda:") and d[5:].isdigit():
        return "cuda", int(d[5:])
    raise UsageError(f"device {device!r} is not understood; use 'cpu', 'cuda' or 'cuda:N'")


def resolve_providers(device: str, providers: Sequence[str] | None, available: Sequence[str]) -> list[Any]:
    """The provider list for ``InferenceSession``: asked-for providers first, CPU last as fallback.

    Raises :class:`BackendUnavailableError` naming what to install when an asked-for provider
    is not in ``available`` (``onnxruntime.get_available_providers()``).
    """
    kind, index = parse_device(device)
    if providers:
        names = []
        for p in providers:
            full = PROVIDER_ALIASES.get(str(p).lower(), str(p))
            if full not in (CPU_EP, CUDA_EP, TRT_EP) and full not in available:
                raise UsageError(f"unknown ONNX Runtime provider {p!r}; use cpu, cuda or tensorrt")
            names.append(full)
    else:
        names = [CUDA_EP] if kind == "cuda" else [CPU_EP]
    for name in names:
        if name not in available:
            raise BackendUnavailableError(
                f"ONNX Runtime here has no {name} (available: {', '.join(available)}); "
                f"{_INSTALL_HINT.get(name, 'install an onnxruntime build that has it')}")
    out: list[Any] = []
    for name in names:
        if name in (CUDA_EP, TRT_EP):
            out.append((name, {"device_id": index}))
        else:
            out.append(name)
    if CPU_EP not in names:
        out.append(CPU_EP)  # ops a GPU provider cannot take fall back to the CPU
    return out


class OnnxRuntimeBackend(Backend):
    """Runs a ``.onnx`` file with onnxruntime.

    Options: ``threads`` (intra-op threads; None = onnxruntime's default), ``providers``
    (e.g. ``["tensorrt", "cuda"]``; default from ``device``), ``spin`` (let idle worker threads
    busy-wait, onnxruntime's default; off here, see below), and for a model without edgeseg
    metadata ``classes`` (+ optional ``palette``, ``mean``, ``std``) given by hand.
    """

    name = "onnxruntime"
    concurrent_runs = True  # InferenceSession.run is thread-safe, and each call returns fresh arrays
    fresh_outputs = True

    def __init__(self, path: str | Path, device: str = "cpu", *, threads: int | None = None,
                 providers: Sequence[str] | None = None, classes: Sequence[str] | None = None,
                 palette: Sequence[Sequence[int]] | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, spin: bool = False, **options: Any) -> None:
        super().__init__(path, device, threads=threads, providers=providers, spin=spin, **options)
        import onnxruntime as ort

        self._ort = ort
        if not self.path.is_file():
            raise ModelFormatError(f"model file {self.path} does not exist")
        if threads is not None and threads < 0:
            raise UsageError(f"threads={threads} must be 0 (library default) or a positive number")
        available = ort.get_available_providers()
        self.requested_providers = resolve_providers(device, providers, available)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # errors only: warnings about unused initializers are noise here
        if threads:
            so.intra_op_num_threads = int(threads)
        if not spin:
            # Idle intra-op threads busy-wait after each run by default. On a small CPU that steals
            # the cores the capture/render threads and post-processing need (docs/runtime.md#backends).
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.threads, self.spin = threads, spin
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=so,
                                                providers=self.requested_providers)
        except Exception as e:  # onnxruntime raises its own pybind exception types for bad files
            first = first_line(e)
            raise ModelFormatError(f"{self.path} is not a loadable ONNX model ({first}); "
                                   "re-export it with 'edgeseg export'") from None

        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise ModelFormatError(f"{self.path} has {len(inputs)} inputs; an edgeseg model takes one image batch")
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inputs[0].shape)
        self.output_shape = tuple(d if isinstance(d, int) else None for d in outputs[0].shape)
        self.input_dtype = np.dtype(_ORT_DTYPES.get(inputs[0].type, np.float32))
        self.output_dtype = np.dtype(_ORT_DTYPES.get(outputs[0].type, np.float32))
        if len(self.input_shape) != 4:
            raise ModelFormatError(f"{self.path} input {self.input_name!r} has shape {inputs[0].shape}; "
                                   "expected 4 dimensions (N, 3, H, W) or (N, H, W, 3)")

        props = dict(self.session.get_modelmeta().custom_metadata_map)
        facts = io_facts(self.input_shape, self.input_dtype, self.output_shape)
        self.meta = read_meta(props, self.path, facts, classes=classes, palette=palette, mean=mean, std=std)
        self._check_io()

    # -- metadata --------------------------------------------------------------------------------
    def _check_io(self) -> None:
        m = self.meta
        if m.input_layout == LAYOUT_UINT8 and self.input_dtype != np.uint8:
            raise ModelFormatError(f"{self.path}: metadata says uint8 NHWC input but the graph input is "
                                   f"{self.input_dtype}; re-export it with 'edgeseg export'")
        channel_axis = 3 if m.input_layout == LAYOUT_UINT8 else 1
        if self.input_shape[channel_axis] not in (None, 3):
            raise ModelFormatError(f"{self.path}: input shape {self.input_shape} does not have 3 colour channels "
                                   f"on axis {channel_axis} as layout {m.input_layout} requires")
        if m.output_kind == OUTPUT_LOGITS:
            c = self.output_shape[1] if len(self.output_shape) == 4 else -1
            if c is not None and c != m.num_classes:
                raise ModelFormatError(f"{self.path}: the output has {c} class channels {self.output_shape} "
                                       f"but {m.num_classes} classes are named; give one class name per channel")

    # -- Backend ---------------------------------------------------------------------------------
    @property
    def model_hw(self) -> tuple[int | None, int | None]:
        """(H, W) fixed by the graph, ``None`` where dynamic."""
        if self.meta.input_layout == LAYOUT_UINT8:
            return self.input_shape[1], self.input_shape[2]
        return self.input_shape[2], self.input_shape[3]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if batch.dtype != self.input_dtype:
            batch = batch.astype(self.input_dtype)  # e.g. a float16-input model
        out = self.session.run([self.output_name], {self.input_name: batch})[0]
        return as_float_logits(out, self.meta)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({
            "providers": list(self.session.get_providers()),
            "available_providers": list(self._ort.get_available_providers()),
            "onnxruntime": self._ort.__version__,
            "threads": self.threads,
            "spin": self.spin,
            "inputs": [_io_dict(i) for i in self.session.get_inputs()],
            "outputs": [_io_dict(o) for o in self.session.get_outputs()],
        })
        return d

    def close(self) -> None:
        # Dropping the session frees its arenas; a second close is a no-op.
        self.__dict__.pop("session", None)


def _io_dict(arg: Any) -> dict[str, Any]:
    return {"name": arg.name, "shape": [d if isinstance(d, int) else (d or "?") for d in arg.shape],
            "dtype": arg.type.removeprefix("tensor(").removesuffix(")")}
