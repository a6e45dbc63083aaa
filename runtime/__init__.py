"""edgeseg.runtime: torch-free inference for driving cameras.

Importing this package must never import torch (a test proves it); backends
that need optional packages import them only when chosen.
"""

from .errors import EdgesegError
from .metadata import ModelMeta

__all__ = ["EdgesegError", "ModelMeta"]
