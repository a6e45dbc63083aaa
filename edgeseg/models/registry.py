"""Model registry: ``@register_model`` on a factory, ``create_model(name, num_classes, **kw)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgeseg.runtime.errors import UsageError, unknown_name

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register_model(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Register a factory ``fn(num_classes, **kw) -> nn.Module`` under its function name."""
    name = fn.__name__
    if name in _REGISTRY:
        raise RuntimeError(f"model {name!r} registered twice")
    _REGISTRY[name] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def model_description(name: str) -> str:
    fn = _REGISTRY.get(name)
    doc = (fn.__doc__ or "").strip().splitlines() if fn else []
    return doc[0] if doc else ""


def create_model(name: str, num_classes: int, **kwargs: Any):
    """Build a registered model; unknown names get close-match suggestions."""
    if name not in _REGISTRY:
        raise unknown_name("model", name, _REGISTRY)
    if int(num_classes) < 1:
        raise UsageError(f"num_classes must be >= 1, got {num_classes}")
    try:
        return _REGISTRY[name](num_classes=int(num_classes), **kwargs)
    except TypeError as e:
        raise UsageError(f"model {name!r} does not accept these arguments: {e}") from None
    except ValueError as e:  # a value the model refuses (width=-1)
        raise UsageError(f"model {name!r}: {e}") from None
    except (MemoryError, RuntimeError) as e:  # absurd sizes (width=1e9) fail while allocating weights
        if not isinstance(e, MemoryError) and "allocat" not in str(e):
            raise
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "its defaults"
        raise UsageError(f"model {name!r} with {args} does not fit in memory; use smaller model arguments") from None
