"""The edgeseg checkpoint: everything downstream needs, loadable with ``weights_only=True``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts::

    format          "edgeseg.checkpoint"   # tells our files from any other .pt
    format_version  1
    model           {"name": str, "kwargs": {...}}   # create_model(name, num_classes, **kwargs)
    num_classes     int
    state_dict      model weights (always the bare module, never DDP-wrapped)
    classes         [str, ...]; palette [[r, g, b], ...]; ignore_index int
    mean, std       RGB on the [0, 1] scale
    input_size      [H, W] the model was validated at (the native size of the validation images,
                    or the training crop when those sizes vary): the default export size
    dataset         {"layout": str, "root": str}
    epoch, step     progress (epoch = number of finished epochs)
    metrics         last validation metrics; best_metrics: the best ones
    train_config    the TrainConfig as a dict (for --resume)
    optimizer, scheduler, scaler   only in last.pt (resume state)
    edgeseg_version str
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from edgeseg import __version__
from edgeseg.models import create_model
from edgeseg.runtime.errors import CheckpointError, first_line
from edgeseg.runtime.fileio import atomic_path, sha256_file
from edgeseg.runtime.metadata import ModelMeta

FORMAT = "edgeseg.checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    model_name: str
    model_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    classes: list[str]
    palette: list[list[int]]
    ignore_index: int
    mean: list[float]
    std: list[float]
    input_size: list[int]
    dataset: dict[str, str] = field(default_factory=dict)
    epoch: int = 0
    step: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    best_metrics: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    resume_state: dict[str, Any] = field(default_factory=dict)  # optimizer/scheduler/scaler
    edgeseg_version: str = __version__
    path: str = ""  # where it was loaded from (not saved)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def build_model(self) -> torch.nn.Module:
        """Create the model and load the weights (eval mode)."""
        model = create_model(self.model_name, self.num_classes, **self.model_kwargs)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise CheckpointError(f"{self.path or 'checkpoint'}: weights do not fit model "
                                  f"{self.model_name!r} ({first})") from None
        return model.eval()

    def meta(self) -> ModelMeta:
        """Metadata for exported artifacts (precision and IO details are set by the exporter)."""
        return ModelMeta(
            classes=tuple(self.classes),
            palette=tuple(tuple(int(v) for v in c) for c in self.palette),
            mean=tuple(float(v) for v in self.mean),
            std=tuple(float(v) for v in self.std),
            ignore_index=int(self.ignore_index),
            input_size=(int(self.input_size[0]), int(self.input_size[1])) if self.input_size else None,
            model_name=self.model_name,
            source_sha256=sha256_file(self.path) if self.path and os.path.exists(self.path) else "",
            edgeseg_version=__version__,
        )

    def to_dict(self, with_resume_state: bool = True) -> dict[str, Any]:
        d = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "model": {"name": self.model_name, "kwargs": dict(self.model_kwargs)},
            "num_classes": self.num_classes, "state_dict": self.state_dict,
            "classes": list(self.classes), "palette": [list(map(int, c)) for c in self.palette],
            "ignore_index": int(self.ignore_index),
            "mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std],
            "input_size": [int(v) for v in self.input_size], "dataset": dict(self.dataset),
            "epoch": int(self.epoch), "step": int(self.step),
            "metrics": self.metrics, "best_metrics": self.best_metrics,
            "train_config": self.train_config, "edgeseg_version": self.edgeseg_version,
        }
        if with_resume_state:
            d.update(self.resume_state)
        return d


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike, with_resume_state: bool = True) -> Path:
    """Write atomically: a crash mid-save leaves the previous file intact."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(ckpt.to_dict(with_resume_state), f)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename: a power cut must not leave an empty last.pt
    return Path(path)


MAX_CHECKPOINT_BYTES = 8 << 30  # all tensors unpacked: far above any model edgeseg trains
MAX_INFLATION = 10  # torch.save stores tensors uncompressed; deflated entries this much larger are a bomb


def _check_zip_sizes(path: Path) -> None:
    """Refuse, before torch.load, an archive whose entries declare more bytes than a checkpoint can
    have, or compressed entries that inflate far beyond the file (a zip bomb)."""
    try:
        with zipfile.ZipFile(path) as z:
            entries = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable torch checkpoint ({e})") from None
    total = sum(e.file_size for e in entries)
    packed = [e for e in entries if e.compress_type != zipfile.ZIP_STORED]
    inflated = sum(e.file_size for e in packed)
    if total > MAX_CHECKPOINT_BYTES or inflated > MAX_INFLATION * max(path.stat().st_size, 1 << 20):
        raise CheckpointError(f"{path} declares {total:,} bytes of contents ({inflated:,} of them compressed) in a "
                              f"{path.stat().st_size:,}-byte file; a torch checkpoint stores its tensors uncompressed "
                              f"and at most {MAX_CHECKPOINT_BYTES:,} bytes: refused as corrupt or hostile")


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Load an edgeseg checkpoint with ``weights_only=True``; any other file is refused clearly."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix.lower() in (".onnx", ".engine", ".plan"):
        raise CheckpointError(f"{path} is an exported model, not a training checkpoint; pass the .pt file "
                              "it was exported from (best.pt)")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a readable torch checkpoint (not the zip archive torch.save writes); "
                              "train one with 'edgeseg train'")
    _check_zip_sizes(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # Never echo torch's advice to retry with weights_only=False: that would run the file's code.
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f"a Python object ({found.group(1)})" if found else "Python objects"
        raise CheckpointError(f"{path} holds {what} that safe loading (weights_only=True) refuses; "
                              "only edgeseg checkpoints from 'edgeseg train' are accepted") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        first = first_line(e)
        raise CheckpointError(f"{path} is not a readable torch checkpoint ({first})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an edgeseg checkpoint (no 'format': '{FORMAT}' entry); "
                              "train one with 'edgeseg train'")
    if int(raw.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer edgeseg (checkpoint format "
                              f"{raw['format_version']}); upgrade edgeseg")
    try:
        resume = {k: raw[k] for k in ("optimizer", "scheduler", "scaler") if k in raw}
        return Checkpoint(
            model_name=raw["model"]["name"], model_kwargs=dict(raw["model"].get("kwargs", {})),
            state_dict=raw["state_dict"], classes=list(raw["classes"]), palette=list(raw["palette"]),
            ignore_index=int(raw["ignore_index"]), mean=list(raw["mean"]), std=list(raw["std"]),
            input_size=list(raw.get("input_size") or []), dataset=dict(raw.get("dataset", {})),
            epoch=int(raw.get("epoch", 0)), step=int(raw.get("step", 0)),
            metrics=dict(raw.get("metrics", {})), best_metrics=dict(raw.get("best_metrics", {})),
            train_config=dict(raw.get("train_config", {})), resume_state=resume,
            edgeseg_version=str(raw.get("edgeseg_version", "")), path=str(path),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: edgeseg checkpoint is missing or has a malformed entry ({e})") from None


def load_model(path: str | os.PathLike) -> tuple[torch.nn.Module, Checkpoint]:
    """Convenience: ``model, ckpt = load_model('best.pt')``."""
    ckpt = load_checkpoint(path)
    return ckpt.build_model(), ckpt
