"""edgeseg.runtime: torch-free inference for driving cameras.

Importing this package must never import torch (a test proves it); backends
that need optional packages import them only when chosen.

    from edgeseg.runtime import Segmenter
    seg = Segmenter("model.int8.onnx")
    res = seg(frame_bgr)         # res.class_map, res.overlay(0.5), res.timings
"""

from .errors import EdgesegError
from .metadata import ModelMeta
from .segmenter import Result, Segmenter

__all__ = ["EdgesegError", "ModelMeta", "Result", "Segmenter"]
