"""Model zoo: every model is fully convolutional (any H x W in, logits at H x W out).

``create_model(name, num_classes, **kw)`` builds one; ``list_models()`` names them all;
``model_stats(name, num_classes, hw)`` counts parameters and FLOPs.
Importing the model modules below registers them.
"""

from . import fcn, unet  # noqa: F401  (importing registers fcn32s..fcn8s_lite, unet, unet_lite)
from .flops import ModelStats, count_params, model_stats, profile_model
from .registry import create_model, list_models, model_description, register_model

__all__ = ["ModelStats", "count_params", "create_model", "list_models", "model_description", "model_stats",
           "profile_model", "register_model"]
