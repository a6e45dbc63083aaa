"""Evaluation: the numpy confusion-matrix metric over a dataset split.

``evaluate_model`` runs a torch model (training, ``edgeseg val best.pt``);
``evaluate_segmenter`` runs any runtime artifact (ONNX, engine) through the
torch-free :class:`~edgeseg.runtime.Segmenter`. Both score the same way, at the
dataset's native resolution, with the ignore index left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeseg.runtime.errors import UsageError
from edgeseg.runtime.metrics import ConfusionMatrix, SegMetrics
from edgeseg.runtime.progress import Progress


def check_classes(model_classes: Sequence[str], data_classes: Sequence[str], model_name: str, data_name: str) -> None:
    """Refuse to score a model against a dataset with another class list."""
    if list(model_classes) != list(data_classes):
        raise UsageError(
            f"{model_name} predicts {len(model_classes)} classes ({', '.join(model_classes[:4])}, ...) but "
            f"{data_name} has {len(data_classes)} ({', '.join(data_classes[:4])}, ...); "
            "evaluate on the dataset the model was trained for")


def _limit(n: int, max_images: int) -> int:
    if max_images < 0:
        raise UsageError(f"max_images {max_images} must be at least 0 (0 = all images)")
    return min(n, max_images) if max_images else n


def evaluate_model(model: Any, dataset: Any, *, mean: Sequence[float], std: Sequence[float], device: Any = "cpu",
                   batch: int = 4, channels_last: bool = False, amp: bool = False, max_images: int = 0,
                   progress: bool = False) -> SegMetrics:
    """mIoU of a torch model on ``dataset`` (items: RGB uint8 (H, W, 3), label (H, W))."""
    import torch

    n = _limit(len(dataset), max_images)
    device = torch.device(device)
    cm = ConfusionMatrix(len(dataset.classes), dataset.ignore_index)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255.0
    inv_std_t = 1.0 / (torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255.0)
    was_training = model.training
    model.eval()
    pending: list[tuple[np.ndarray, np.ndarray]] = []

    def flush() -> None:
        images = torch.from_numpy(np.stack([p[0] for p in pending])).to(device)  # (N, H, W, 3) uint8
        x = (images.permute(0, 3, 1, 2).float() - mean_t) * inv_std_t  # (N, 3, H, W)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
            pred = model(x).argmax(1).to(torch.uint8).cpu().numpy()  # (N, H, W)
        for p, (_, label) in zip(pred, pending, strict=True):
            cm.update(p, label)
        pending.clear()

    with torch.inference_mode(), Progress(n, "val", enabled=progress) as bar:
        for i in range(n):
            image, label = dataset[i]
            if pending and (image.shape != pending[0][0].shape or len(pending) >= batch):
                flush()
            pending.append((image, label))
            bar.update(1)
        if pending:
            flush()
    model.train(was_training)
    return cm.summary(dataset.classes)


def evaluate_segmenter(seg: Any, dataset: Any, *, max_images: int = 0, progress: bool = False) -> SegMetrics:
    """mIoU of a runtime artifact (anything with ``seg(frame_bgr).class_map``) on ``dataset``."""
    n = _limit(len(dataset), max_images)
    cm = ConfusionMatrix(len(dataset.classes), dataset.ignore_index)
    with Progress(n, "val", enabled=progress) as bar:
        for i in range(n):
            image, label = dataset[i]
            frame = np.ascontiguousarray(image[:, :, ::-1])  # runtime takes camera frames: BGR
            cm.update(seg(frame).class_map, label)
            bar.update(1)
    return cm.summary(dataset.classes)
