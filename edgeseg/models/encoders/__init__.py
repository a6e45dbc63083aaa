"""Encoders: each returns a list of feature maps, finest first, with ``out_channels`` and ``strides``."""

from .plain import PlainEncoder
from .resnet import ResNetEncoder
from .vgg import VGG16Encoder

__all__ = ["PlainEncoder", "ResNetEncoder", "VGG16Encoder"]
