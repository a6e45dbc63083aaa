"""Fixtures for the export tests: a tiny hand-written model (the bring-your-own path)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F


class TinySegNet(nn.Module):
    """Encoder -> decoder -> head with a concatenated skip, transposed-conv upsampling and a resize."""

    def __init__(self, num_classes: int = 5, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width),
                                  nn.ReLU())
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.head = nn.Conv2d(2 * width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.stem(x)  # (N, w, H, W)
        b = self.down(a)  # (N, 2w, H/2, W/2)
        u = F.interpolate(self.up(b), size=a.shape[-2:], mode="bilinear", align_corners=False)  # (N, w, H, W)
        return self.head(torch.cat([a, u], 1))  # (N, C, H, W)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: on the shared 2-core machine two spinning OpenMP threads run ~40x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


CLASSES = ["road", "car", "sky", "tree", "person"]


@pytest.fixture
def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    model = TinySegNet(len(CLASSES))
    # Non-trivial BatchNorm statistics so folding them is actually tested.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


SYNTH = "synthetic://?n=24&size=48x64&seed=5"  # procedural scenes with exact labels; val split = 6 images


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """unet_lite (base 8) trained for a few hundred steps on procedural scenes: a model whose
    activations have real, learned ranges, so INT8 accuracy is meaningful (a random model's is not)."""
    import numpy as np

    from edgeseg.data import build_dataset
    from edgeseg.models import create_model
    from edgeseg.train.checkpoint import Checkpoint, save_checkpoint

    torch.manual_seed(0)
    ds = build_dataset(SYNTH, "train")
    images = torch.from_numpy(np.stack([ds[i][0] for i in range(len(ds))])).permute(0, 3, 1, 2)  # (N, 3, H, W)
    labels = torch.from_numpy(np.stack([ds[i][1] for i in range(len(ds))]).astype(np.int64))  # (N, H, W)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x_all = ((images.float() / 255 - mean) / std).contiguous()  # (N, 3, H, W)
    model = create_model("unet_lite", len(ds.classes), base=8)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # measured: 44 ms/step at 1 thread, 1.7 s at 2 on the shared 2-core box
    try:
        model.train()
        for step in range(240):
            idx = torch.randint(0, len(ds), (8,))
            x, y = x_all[idx], labels[idx]
            if step % 2:  # flips: cheap augmentation so the model does not only memorise
                x, y = x.flip(-1), y.flip(-1)
            loss = F.cross_entropy(model(x), y, ignore_index=ds.ignore_index)  # (N, C, H, W) vs (N, H, W)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    ckpt = Checkpoint(model_name="unet_lite", model_kwargs={"base": 8}, state_dict=model.state_dict(),
                      classes=list(ds.classes), palette=[list(c) for c in ds.palette], ignore_index=ds.ignore_index,
                      mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], input_size=[48, 64],
                      dataset={"layout": "synthetic", "root": SYNTH}, step=240)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(ckpt, path, with_resume_state=False)
    return path
