"""Encoders: each returns a list of feature maps, finest first, with ``out_channels`` and ``strides``."""

from .plain import PlainEncoder

__all__ = ["PlainEncoder"]
