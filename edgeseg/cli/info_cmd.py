"""``edgeseg info MODEL``: what a model is and what can run it here.

Torch-free unless the model is a ``.pt`` checkpoint: availability of torch and CUDA is
probed with ``importlib.util.find_spec`` (no import) unless the model itself needs torch.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from typing import Any

HELP = "metadata, IO and backend availability of a model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a .onnx, .engine/.plan or .pt file, or a bundled model's short name")
    parser.add_argument("--backend", default="auto",
                        help="auto | onnxruntime | openvino | tensorrt | pytorch (default: auto)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N; OpenVINO: CPU | GPU | NPU | AUTO "
                                                        "(default: cpu)")
    parser.add_argument("--json", metavar="OUT", help="also write everything as JSON to OUT ('-' for stdout only)")


def environment() -> dict[str, Any]:
    """Which backends this machine can run, without importing torch or tensorrt."""
    import onnxruntime as ort

    from edgeseg.runtime import jpeg

    env: dict[str, Any] = {
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": list(ort.get_available_providers()),
        "tensorrt_installed": importlib.util.find_spec("tensorrt") is not None,
        "cuda_python_installed": importlib.util.find_spec("cuda") is not None,
        "torch_installed": importlib.util.find_spec("torch") is not None,
        "jpeg_decoder": "libjpeg-turbo (simplejpeg)" if jpeg.turbo_available() else "opencv",
    }
    # torch.cuda would answer "is there a GPU?" but importing torch costs seconds and the runtime
    # promises not to; only report it when torch is already loaded (a .pt model was opened).
    torch = sys.modules.get("torch")
    env["torch_cuda"] = bool(torch.cuda.is_available()) if torch is not None else None
    env["openvino"] = _openvino()
    return env


def _openvino() -> dict[str, Any] | None:
    """OpenVINO's version and the devices it sees ({"CPU": "Intel(R) Core(TM) ..."}); None when not installed."""
    if importlib.util.find_spec("openvino") is None:
        return None
    from edgeseg.runtime.backends.ov import device_names, import_openvino

    return {"version": import_openvino().__version__.split("-")[0], "devices": device_names()}


def describe(model: str, backend: str = "auto", device: str = "cpu") -> dict[str, Any]:
    """Everything ``edgeseg info`` prints, as a dict (also used by tests and ``--json``)."""
    from edgeseg.runtime.fileio import sha256_file
    from edgeseg.runtime.segmenter import Segmenter

    with Segmenter(model, backend=backend, device=device) as seg:
        info = seg.info
        details = info.pop("backend_details")
        meta = seg.meta.to_dict()
        files = [seg.path] + ([seg.path.with_suffix(".bin")] if seg.path.suffix.lower() == ".xml" else [])
    out = {
        "model": info["model"],
        "size_bytes": sum(f.stat().st_size for f in files),  # an IR's weights (.bin) count too
        "sha256": sha256_file(info["model"]),
        "metadata": meta,
        "runtime": info,
        "io": {"inputs": details.get("inputs", []), "outputs": details.get("outputs", [])},
        "backend": {k: v for k, v in details.items() if k not in ("inputs", "outputs")},
        "environment": environment(),
    }
    if len(files) > 1:
        out["weights_sha256"] = sha256_file(files[1])
    return out


def _fmt_io(io: dict[str, Any]) -> str:
    shape = "x".join(str(d) for d in io.get("shape", []))
    return f"{io.get('name')} {io.get('dtype')} [{shape}]"


def _print(d: dict[str, Any]) -> None:
    meta, rt, env = d["metadata"], d["runtime"], d["environment"]
    rows = [
        ("model", f"{d['model']} ({d['size_bytes'] / 1e6:.2f} MB, sha256 {d['sha256'][:12]})"),
        ("architecture", meta.get("model_name") or "?"),
        ("precision", meta["precision"] + (f" ({meta['int8_target']})" if meta.get("int8_target") else "")),
        ("input", f"{'x'.join(map(str, rt['input_size']))} {'(dynamic H/W)' if meta['dynamic_hw'] else '(fixed)'}, "
                  f"layout {meta['input_layout']}, batch {rt['batch']}"),
        ("output", meta["output_kind"] + (f" at 1/{meta['output_stride']} of the input size, nearest-upsampled"
                                          if meta.get("output_stride", 1) > 1 else "")
         + (" (uint8: logit = (q - {1}) * {0:.6g})".format(*meta["output_quant"]) if meta.get("output_quant") else "")),
        ("mean / std", f"{meta['mean']} / {meta['std']}"),
        ("classes", f"{len(meta['classes'])}: {', '.join(meta['classes'])}"),
        ("ignore index", str(meta["ignore_index"])),
        ("edgeseg version", meta.get("edgeseg_version") or "?"),
    ]
    rows += [("io input", _fmt_io(i)) for i in d["io"]["inputs"]]
    rows += [("io output", _fmt_io(o)) for o in d["io"]["outputs"]]
    rows += [
        ("backend", f"{rt['backend']} on {rt['device']}, providers {', '.join(rt['providers']) or '-'}"),
        ("onnxruntime", f"{env['onnxruntime']} ({', '.join(env['onnxruntime_providers'])})"),
        ("openvino", "not installed (pip install 'edgeseg[openvino]')" if not env["openvino"] else
         f"{env['openvino']['version']}, devices: " + (", ".join(f"{k} ({v})" for k, v in env["openvino"]["devices"].items())
                                                       or "none")),
        ("tensorrt", "installed" if env["tensorrt_installed"] else "not installed (pip install edgeseg[trt], needs "
                     "an NVIDIA GPU)"),
        ("jpeg decoder", env["jpeg_decoder"] + ("" if env["jpeg_decoder"] != "opencv" else
                                                " (pip install simplejpeg: faster MJPEG and JPEG decoding)")),
        ("torch", ("installed" if env["torch_installed"] else "not installed (only .pt checkpoints need it)")
         + ("" if env["torch_cuda"] is None else f", CUDA {'available' if env['torch_cuda'] else 'not available'}")),
    ]
    from edgeseg.runtime.metadata import printable

    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {printable(v)}")  # names come from the file: no terminal escapes


def run(args: argparse.Namespace) -> int:
    d = describe(args.model, args.backend, args.device)
    if args.json == "-":
        json.dump(d, sys.stdout, indent=2)
        print()
        return 0
    _print(d)
    if args.json:
        from edgeseg.runtime.fileio import write_json

        write_json(args.json, d)
        print(f"wrote {args.json}")
    return 0
