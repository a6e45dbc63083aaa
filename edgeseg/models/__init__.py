"""Model zoo: every model is fully convolutional (any H x W in, logits at H x W out).

``create_model(name, num_classes, **kw)`` builds one; ``list_models()`` names them all.
Importing the model modules below registers them.
"""

from . import fcn, unet  # noqa: F401  (importing registers fcn32s..fcn8s_lite, unet, unet_lite)
from .registry import create_model, list_models, model_description, register_model

__all__ = ["create_model", "list_models", "model_description", "register_model"]
