"""PyTorch reference backend: runs an edgeseg checkpoint (``.pt``) directly.

torch is imported only when this backend is constructed, so the runtime stays torch-free
for ONNX and TensorRT artifacts. It is the reference the exported artifacts are compared
against, and a quick way to look at a checkpoint without exporting it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, UsageError
from .base import Backend
from .ort import parse_device


class PyTorchBackend(Backend):
    """Options: ``threads`` (torch intra-op threads; process-wide in torch, so set only when given)."""

    name = "pytorch"
    fresh_outputs = True  # every call makes a new output tensor

    def __init__(self, path: str | Path, device: str = "cpu", *, threads: int | None = None,
                 **options: Any) -> None:
        super().__init__(path, device, threads=threads, **options)
        try:
            import torch
        except ImportError:
            raise BackendUnavailableError(
                f"running the checkpoint {self.path.name} needs PyTorch ('pip install edgeseg[train]'); "
                "or export it to ONNX with 'edgeseg export' and run that") from None
        # The one place the runtime touches training code: a checkpoint is only meaningful with the
        # model registry that built it. Imported here, lazily, so ONNX/TensorRT users never load it.
        from edgeseg.train.checkpoint import load_checkpoint

        self._torch = torch
        kind, index = parse_device(device)
        if kind == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError(f"device {device!r} asked for, but this PyTorch sees no CUDA GPU; "
                                          "use device='cpu' or install a CUDA build of PyTorch")
        if threads is not None:
            if threads < 1:
                raise UsageError(f"threads={threads} must be a positive number for the PyTorch backend")
            torch.set_num_threads(int(threads))
        self.torch_device = torch.device("cuda", index) if kind == "cuda" else torch.device("cpu")
        ckpt = load_checkpoint(self.path)  # weights_only=True inside
        self.model = ckpt.build_model().to(self.torch_device)
        # channels_last: faster convolutions on CUDA tensor cores and on x86 CPUs (docs/training.md).
        self.model = self.model.to(memory_format=torch.channels_last)
        self.fp16 = kind == "cuda"  # autocast FP16 on GPUs; CPU stays FP32 (the reference)
        # A fully convolutional model: any batch and any H, W.
        self.meta = ckpt.meta().with_(dynamic_hw=True, dynamic_batch=True)
        self.input_shape = (None, 3, None, None)
        self.checkpoint_epoch = ckpt.epoch

    def infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(batch).to(self.torch_device, non_blocking=True)  # (N, 3, H, W) float32
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.torch_device.type, dtype=torch.float16,
                                                    enabled=self.fp16):
            logits = self.model(x)  # (N, C, H, W)
        # channels_last outputs are strided; post-processing reads contiguous (C, H, W) planes.
        return logits.float().contiguous().cpu().numpy()  # (N, C, H, W) float32

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        torch = self._torch
        d.update({"torch": torch.__version__, "fp16_autocast": self.fp16, "channels_last": True,
                  "threads": torch.get_num_threads(), "providers": [str(self.torch_device)],
                  "epoch": self.checkpoint_epoch})
        return d

    def close(self) -> None:
        if getattr(self, "model", None) is not None:
            self.model = None
            if self.torch_device.type == "cuda":
                self._torch.cuda.empty_cache()
