"""FP32 vs INT8 mIoU of a model trained outside edgeseg, quantized through the bring-your-own-ONNX path.

The model is ESPNet-like (Mehta et al., ECCV 2018): a stride-2 stem, blocks of parallel depthwise dilated
3x3 convolutions (dilations 1, 2, 4, 8) summed hierarchically, PReLU activations, a 1x1 classifier and a
bilinear x8 upsampling. Models of this kind lose 3-8 mIoU points under plain MinMax INT8 (docs/byo-onnx.md).
It is a plain torch module defined here, not part of the model registry: it stands for "a model trained
elsewhere", and only its ONNX reaches edgeseg.

Split (leave one sequence out): CamVid train frames of sequences 0001TP and 0016E5 train the model; the val
split (also 0016E5, other frames) feeds the accuracy gate; sequence 0006R0 (101 train-split frames, never
seen by training or the gate) gives the reported figures.

    python benchmarks/foreign_int8_accuracy.py train --data CAMVID --out runs/espnet_like --minutes 13
    python benchmarks/foreign_int8_accuracy.py evaluate --data CAMVID --out runs/espnet_like [--json r.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HELD_OUT = "0006R0"  # the sequence the figures are measured on
CLASSES = 11
IGNORE = 11
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SIZE = (360, 480)


def build_model():  # noqa: ANN201 - torch is imported lazily (the evaluate step does not need it)
    import torch
    from torch import nn
    from torch.nn import functional as F

    class ConvBNPReLU(nn.Sequential):
        def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
            super().__init__(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.PReLU(cout))

    class ESPBlock(nn.Module):
        """1x1 reduce -> 4 depthwise dilated 3x3 branches, summed hierarchically -> concat -> BN -> PReLU."""

        def __init__(self, channels: int, stride: int = 1, cin: int | None = None) -> None:
            super().__init__()
            cin = cin or channels
            n = channels // 4
            self.reduce = nn.Conv2d(cin, n, 3 if stride == 2 else 1, stride, 1 if stride == 2 else 0, bias=False)
            self.branches = nn.ModuleList(nn.Conv2d(n, n, 3, 1, d, dilation=d, groups=n, bias=False)
                                          for d in (1, 2, 4, 8))
            self.bn = nn.BatchNorm2d(channels)
            self.act = nn.PReLU(channels)
            self.residual = stride == 1 and cin == channels

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            r = self.reduce(x)  # (N, C/4, H, W)
            outs = [b(r) for b in self.branches]
            for i in range(1, 4):  # hierarchical sum: removes the gridding of large dilations
                outs[i] = outs[i] + outs[i - 1]
            y = torch.cat(outs, 1)  # (N, C, H, W)
            if self.residual:
                y = y + x
            return self.act(self.bn(y))

    class ESPNetLike(nn.Module):
        def __init__(self, classes: int = CLASSES) -> None:
            super().__init__()
            self.stem = ConvBNPReLU(3, 16, 2)  # 1/2
            self.down1 = ESPBlock(64, 2, cin=16)  # 1/4
            self.level1 = nn.Sequential(*(ESPBlock(64) for _ in range(2)))
            self.down2 = ESPBlock(128, 2, cin=64)  # 1/8
            self.level2 = nn.Sequential(*(ESPBlock(128) for _ in range(3)))
            self.classifier = nn.Conv2d(128, classes, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h, w = x.shape[2:]
            y = self.level1(self.down1(self.stem(x)))  # (N, 64, H/4, W/4)
            y = self.level2(self.down2(y))  # (N, 128, H/8, W/8)
            y = self.classifier(y)  # (N, C, H/8, W/8)
            return F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)  # (N, C, H, W)

    return ESPNetLike()


def _load(data: str, split: str, keep) -> tuple[list[np.ndarray], list[np.ndarray]]:  # noqa: ANN001
    from edgeseg.data import build_dataset

    ds = build_dataset(data, split)
    images, labels = [], []
    for i, f in enumerate(ds.files):
        name = Path(f[0] if isinstance(f, tuple) else f).name
        if keep(name):
            img, lab = ds[i]
            images.append(np.ascontiguousarray(img))
            labels.append(np.asarray(lab))
    return images, labels


def train(args: argparse.Namespace) -> None:
    import cv2
    import torch
    from torch.nn import functional as F

    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images, labels = _load(args.data, "train", lambda n: not n.startswith(HELD_OUT))
    counts = np.bincount(np.concatenate([lab.ravel() for lab in labels]), minlength=CLASSES + 1)[:CLASSES]
    freq = counts / counts.sum()
    weights = np.minimum(np.sqrt(np.median(freq) / np.maximum(freq, 1e-8)), 5.0)
    model = build_model().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=1e-4)
    mean, std = np.array(MEAN, np.float32), np.array(STD, np.float32)
    crop, batch = (192, 256), 8
    budget, start, step = args.minutes * 60.0, time.time(), 0
    model.train()
    while (elapsed := time.time() - start) < budget:
        lr = 4e-3 * (1 - elapsed / budget) ** 0.9
        for g in opt.param_groups:
            g["lr"] = lr
        xs, ys = [], []
        for i in rng.integers(0, len(images), batch):
            s = rng.uniform(0.5, 1.25)
            img = cv2.resize(images[i], None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
            lab = cv2.resize(labels[i], None, fx=s, fy=s, interpolation=cv2.INTER_NEAREST)
            ph, pw = max(crop[0] - img.shape[0], 0), max(crop[1] - img.shape[1], 0)
            if ph or pw:
                img = np.pad(img, ((0, ph), (0, pw), (0, 0)))
                lab = np.pad(lab, ((0, ph), (0, pw)), constant_values=IGNORE)
            y0, x0 = rng.integers(0, img.shape[0] - crop[0] + 1), rng.integers(0, img.shape[1] - crop[1] + 1)
            img, lab = img[y0:y0 + crop[0], x0:x0 + crop[1]], lab[y0:y0 + crop[0], x0:x0 + crop[1]]
            if rng.random() < 0.5:
                img, lab = img[:, ::-1], lab[:, ::-1]
            xs.append(((img.astype(np.float32) / 255 - mean) / std).transpose(2, 0, 1))
            ys.append(lab.astype(np.int64))
        x = torch.from_numpy(np.stack(xs)).contiguous(memory_format=torch.channels_last)  # (N, 3, h, w)
        y = torch.from_numpy(np.stack(ys))  # (N, h, w)
        loss = F.cross_entropy(model(x), y, weight=torch.tensor(weights, dtype=torch.float32), ignore_index=IGNORE)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.3f} lr {lr:.5f} {elapsed / 60:.1f} min", flush=True)
    model.eval()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "espnet_like.pth")
    with torch.no_grad():
        torch.onnx.export(model, (torch.randn(1, 3, *SIZE),), str(out / "espnet_like.onnx"), dynamo=True,
                          input_names=["input"], output_names=["logits"], opset_version=18, external_data=False)
    (out / "classes.txt").write_text("\n".join(build_classes()) + "\n", encoding="utf-8")
    print(f"trained {step} steps in {(time.time() - start) / 60:.1f} min; wrote {out / 'espnet_like.onnx'}")


def build_classes() -> list[str]:
    from edgeseg.data import CAMVID_CLASSES

    return list(CAMVID_CLASSES)


def evaluate(args: argparse.Namespace) -> None:
    import onnxruntime

    from edgeseg.export.calibration import ImageSet, load_images
    from edgeseg.export.foreign import export_onnx_model
    from edgeseg.runtime.metrics import ConfusionMatrix
    from edgeseg.runtime.segmenter import Segmenter

    out = Path(args.out)
    held_images, held_labels = _load(args.data, "train", lambda n: n.startswith(HELD_OUT))
    gate_val = load_images(args.data, "val", args.val_images, need_labels=True, what="validation")
    train_images, _ = _load(args.data, "train", lambda n: not n.startswith(HELD_OUT))
    picks = np.linspace(0, len(train_images) - 1, args.calib_images).round().astype(int)
    calib = ImageSet(source=f"{args.data} train (without {HELD_OUT})", ids=tuple(f"train{i}" for i in picks),
                     images=tuple(train_images[i] for i in picks), labels=None)
    result = export_onnx_model(out / "espnet_like.onnx", classes=out / "classes.txt", mean=MEAN, std=STD,
                               ignore_index=IGNORE, precision="int8", calib=calib, val=gate_val,
                               out=out / "espnet_like_byo", calib_method=args.calib_method,
                               max_miou_drop=args.max_miou_drop, threads=1, progress=True)
    rows = {}
    for row in result.rows:
        cm = ConfusionMatrix(CLASSES, IGNORE)
        with Segmenter(row["artifact"], threads=1) as seg:
            for img, lab in zip(held_images, held_labels, strict=True):
                cm.update(seg(np.ascontiguousarray(img[:, :, ::-1])).class_map, lab)  # RGB -> BGR frame
        rows[row["precision"]] = {"artifact": row["artifact"], "miou": cm.summary(build_classes()).miou,
                                  "nodes_in_float": (row.get("gate") or {}).get("nodes_in_float"),
                                  "gate_set_miou": row["parity"]["metrics"].get("miou"),
                                  "latency_ms_1_thread": row["parity"]["latency_ms"]}
    report = {"held_out": f"CamVid train-split sequence {HELD_OUT} ({len(held_images)} images, void ignored)",
              "calib_images": len(calib), "gate_images": len(gate_val), "calib_method": args.calib_method,
              "onnxruntime": onnxruntime.__version__, "artifacts": rows}
    if "fp32" in rows and "int8" in rows:
        report["int8_minus_fp32"] = rows["int8"]["miou"] - rows["fp32"]["miou"]
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--minutes", type=float, default=13.0)
    e = sub.add_parser("evaluate")
    e.add_argument("--data", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--calib-images", type=int, default=64)
    e.add_argument("--calib-method", default="percentile")
    e.add_argument("--val-images", type=int, default=40)
    e.add_argument("--max-miou-drop", type=float, default=0.5)
    e.add_argument("--json", default=None)
    args = p.parse_args(argv)
    (train if args.cmd == "train" else evaluate)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
