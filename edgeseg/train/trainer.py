"""The training loop: datasets -> model -> poly-LR optimisation -> per-epoch mIoU -> checkpoints."""

from __future__ import annotations

import csv
import logging
import math
import os
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeseg import __version__
from edgeseg.models import create_model
from edgeseg.runtime.errors import CheckpointError, UsageError
from edgeseg.runtime.progress import Progress

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .distributed import DistInfo, all_reduce_mean, barrier, cleanup, init_distributed
from .evaluate import evaluate_model
from .losses import SegmentationLoss

log = logging.getLogger("edgeseg.train")

METRICS_FIELDS = ["epoch", "step", "lr", "train_loss", "val_miou", "val_pixel_acc", "images_per_s", "elapsed_min"]


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    best_path: Path
    last_path: Path
    best_metrics: dict[str, Any]
    epochs: int
    steps: int
    images_per_s: float
    elapsed_s: float


def epoch_label(epoch: int, epochs: int, elapsed_s: float, budget_s: float) -> str:
    """Progress label: "epoch 3/50", or with a time budget "epoch 3, 4.2 of 110 min" (the budget
    then sets the schedule, and an epoch cap like 10000 says nothing)."""
    if budget_s > 0:
        return f"epoch {epoch + 1}, {elapsed_s / 60:.1f} of {budget_s / 60:g} min"
    return f"epoch {epoch + 1}/{epochs}"


def _epoch_seed(seed: int, epoch: int) -> int:
    """One 63-bit seed per (run seed, epoch): every epoch's draws can be replayed on their own."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class _TrainView(torch.utils.data.Dataset):
    """Applies the random training transform to ``(epoch, index)`` keys from :class:`_EpochSampler`.

    Each item's augmentation draws come from its own generator seeded by (seed, epoch, index),
    so they do not depend on the worker that loads it, and a resumed run draws what an
    uninterrupted one would have.
    """

    def __init__(self, dataset: Any, transform: Any, seed: int) -> None:
        self.dataset, self.transform, self.seed = dataset, transform, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, i = key
        image, label = self.dataset[i]
        image, label = self.transform(image, label, np.random.default_rng([self.seed, epoch, i]))
        return (torch.from_numpy(np.ascontiguousarray(image)),  # (H, W, 3) uint8
                torch.from_numpy(np.ascontiguousarray(label).astype(np.int64)))  # (H, W) int64


class _EpochSampler(torch.utils.data.Sampler):
    """Yields ``(epoch, index)``: a shuffled order fixed by (seed, epoch), or ``base``'s (DDP).

    ``start(epoch, skip)`` sets the epoch and skips its first ``skip`` indices: a run resumed
    mid-epoch carries on with the batches it had not seen.
    """

    def __init__(self, n: int, seed: int, base: torch.utils.data.Sampler | None = None) -> None:
        self.n, self.seed, self.base = n, seed, base
        self.epoch, self.skip = 0, 0

    def start(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip
        if self.base is not None and hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def _order(self) -> list[int]:
        if self.base is not None:
            return list(self.base)
        g = torch.Generator().manual_seed(_epoch_seed(self.seed, self.epoch))
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self):
        epoch, order = self.epoch, self._order()[self.skip:]
        self.skip = 0  # only the first pass after a resume starts late
        return iter([(epoch, i) for i in order])

    def __len__(self) -> int:
        return len(self.base) if self.base is not None else self.n


def _worker_init(worker_id: int) -> None:
    import signal

    # Ctrl-C and SIGTERM reach the whole process group; the main process saves last.pt and then
    # stops the workers. A worker killed first would turn the stop into a DataLoader crash.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def resolve_device(device: str) -> torch.device:
    if device in ("auto", ""):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise UsageError(f"--device {device!r} is not a device; use cpu, cuda or cuda:N") from None


def poly_lr(cfg: TrainConfig, step: int, progress: float) -> float:
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    return cfg.lr * warm * max(0.0, 1.0 - progress) ** cfg.poly_power


def load_init_weights(model: torch.nn.Module, model_name: str, path: str) -> list[str]:
    """Copy a checkpoint's weights into ``model``; returns the names left at their fresh values.

    Tensors are matched by name and shape, so a CamVid model can seed training on a dataset with
    other classes: everything but the classifier carries over.
    """
    ckpt = load_checkpoint(path)
    if ckpt.model_name != model_name:
        raise UsageError(f"--weights {path} holds a {ckpt.model_name!r} model, not {model_name!r}; "
                         f"pass --model {ckpt.model_name} or a {model_name} checkpoint")
    own = model.state_dict()
    usable = {k: v for k, v in ckpt.state_dict.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise UsageError(f"--weights {path}: no tensor matches {model_name} with these model arguments; "
                         "check --model-arg against the checkpoint's")
    model.load_state_dict(usable, strict=False)
    return sorted(k for k in own if k not in usable)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # No weight decay on norms and biases: decaying BN scales hurts small models.
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    groups = _param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def _class_weight_tensor(cfg: TrainConfig, dataset: Any, device: torch.device) -> torch.Tensor | None:
    if cfg.class_weighting == "none":
        return None
    from edgeseg.data import class_frequencies, class_weights

    freqs = class_frequencies(dataset)
    weights = class_weights(freqs, method=cfg.class_weighting, cap=cfg.class_weight_cap)
    return torch.as_tensor(np.asarray(weights), dtype=torch.float32, device=device)


def _load_datasets(cfg: TrainConfig) -> tuple[Any, Any]:
    from edgeseg.data import build_dataset, check_dataset

    if cfg.holdout_sequence:
        from edgeseg.data.sequences import load_holdout, parse_sequences

        train_ds, val_ds = load_holdout(cfg.data, cfg.holdout_sequence, (cfg.train_split, cfg.val_split),
                                        layout=cfg.layout, prefixes=parse_sequences(cfg.sequences),
                                        cache=cfg.cache)
    elif "+" in cfg.train_split:  # e.g. train+val: the final model, on a schedule chosen by cross-validation
        from edgeseg.data.sequences import concat

        splits = [s for s in cfg.train_split.split("+") if s]
        train_ds = concat([build_dataset(cfg.data, s, layout=cfg.layout) for s in splits], cfg.train_split)
        if cfg.cache:
            train_ds.preload()
        val_ds = build_dataset(cfg.data, cfg.val_split, layout=cfg.layout, cache=cfg.cache)
        if cfg.val_split in splits:
            log.warning("training on %s: the %s mIoU scores images the model trains on, not how it does on "
                        "unseen ones (that is what --holdout-sequence cross-validation is for)",
                        cfg.train_split, cfg.val_split)
    else:
        train_ds = build_dataset(cfg.data, cfg.train_split, layout=cfg.layout, cache=cfg.cache)
        val_ds = build_dataset(cfg.data, cfg.val_split, layout=cfg.layout, cache=cfg.cache)
    # Scan every pair up front: a bad label found after an hour of training is an hour lost.
    check_dataset(train_ds)
    check_dataset(val_ds)
    if list(train_ds.classes) != list(val_ds.classes):
        raise UsageError(f"{cfg.data}: the {cfg.train_split} and {cfg.val_split} splits have different classes")
    return train_ds, val_ds


def _native_size(dataset: Any) -> tuple[int, int] | None:
    """(H, W) shared by the first validation images, or None when they differ."""
    sizes = {tuple(dataset[i][1].shape[:2]) for i in range(min(len(dataset), 8))}
    return sizes.pop() if len(sizes) == 1 else None


def _portable_root(root: Any) -> str:
    """Dataset location for the checkpoint: absolute for folders, so export/val work from any directory."""
    text = str(root)
    return text if "://" in text else str(Path(text).resolve())


def _append_metrics(path: Path, row: dict[str, Any]) -> None:
    from edgeseg.runtime.fileio import disk_full, is_disk_full

    new = not path.exists()
    try:
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRICS_FIELDS)
            if new:
                w.writeheader()
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    except OSError as e:
        if is_disk_full(e):
            raise disk_full(path) from e
        raise


RUN_FILES = ("best.pt", "last.pt", "metrics.csv")
# What a resumed run may take from the command line: where it runs and how far it goes, never
# the recipe (model, data transforms, optimizer, schedule), which is the saved run's.
RESUME_FIELDS = ("out", "data", "device", "workers", "threads", "cache", "val_every", "val_max_images")


def check_fresh_out(out: str | os.PathLike, exist_ok: bool = False) -> None:
    """UsageError when a fresh run would replace an earlier run's checkpoints in ``out``."""
    found = [name for name in RUN_FILES if (Path(out) / name).exists()]
    if found and not exist_ok:
        raise UsageError(f"--out {out} already holds a run ({', '.join(found)}); continue it with --resume "
                         f"{Path(out) / 'last.pt'}, choose another --out, or pass --exist-ok to replace it")


def train(cfg: TrainConfig, resume: str | os.PathLike | None = None, progress: bool = True, *,
          resume_epochs: int | None = None, resume_fields: tuple[str, ...] = ("out",),
          exist_ok: bool = False) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.data``; writes best.pt, last.pt and metrics.csv into ``cfg.out``.

    A fresh run refuses an ``out`` that holds an earlier run unless ``exist_ok`` (then it starts
    that folder's metrics.csv anew). ``resume`` continues from a last.pt (model, optimizer, step,
    elapsed time, best metrics) where it stopped, even mid-epoch, with the data order and
    augmentation an uninterrupted run would have had; the configuration saved in that checkpoint
    is used, with the ``resume_fields`` (a subset of :data:`RESUME_FIELDS`) taken from ``cfg``
    and the epoch count from ``resume_epochs`` when given (to extend a finished run).
    """
    start_ckpt: Checkpoint | None = None
    if not resume:
        check_fresh_out(cfg.out, exist_ok)
        if exist_ok and (Path(cfg.out) / "metrics.csv").exists():
            (Path(cfg.out) / "metrics.csv").unlink()  # a replaced run's rows would mix with the new ones
    else:
        bad = set(resume_fields) - set(RESUME_FIELDS)
        if bad:
            raise UsageError(f"a resumed run cannot change {', '.join(sorted(bad))}")
        start_ckpt = load_checkpoint(resume)
        if "optimizer" not in start_ckpt.resume_state:
            raise CheckpointError(f"{resume} has no optimizer state (it is a best.pt); resume from last.pt")
        saved = TrainConfig.from_dict(start_ckpt.train_config)
        data, root = saved.data, start_ckpt.dataset.get("root")
        if "://" not in data and not Path(data).exists() and root and Path(root).exists():
            data = root  # saved relative to another working directory (older checkpoints)
        kept = {f: getattr(cfg, f) for f in resume_fields}
        if "data" not in resume_fields:
            kept["data"] = data
        cfg = replace(saved, **kept, epochs=resume_epochs or saved.epochs)
    if "://" not in cfg.data and Path(cfg.data).exists():
        cfg = replace(cfg, data=_portable_root(cfg.data))  # last.pt then resumes from any directory

    dist_info: DistInfo = init_distributed(cfg.device)
    try:
        return _train(cfg, start_ckpt, dist_info, progress)
    finally:
        cleanup(dist_info)


def _train(cfg: TrainConfig, start: Checkpoint | None, dist_info: DistInfo, show_progress: bool) -> TrainResult:
    device = resolve_device(cfg.device)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    seed = cfg.seed + dist_info.rank
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    is_main = dist_info.is_main
    out = Path(cfg.out)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)

    train_ds, val_ds = _load_datasets(cfg)
    num_classes = len(train_ds.classes)
    from edgeseg.data import train_transform

    transform = train_transform(crop=cfg.imgsz, scale=cfg.scale, flip=cfg.flip, photometric=cfg.photometric,
                                ignore_index=train_ds.ignore_index, augment=cfg.augment)
    view = _TrainView(train_ds, transform, seed)
    if len(view) < cfg.batch * dist_info.world_size:
        raise UsageError(f"{cfg.data} ({cfg.train_split}) has {len(view)} images, fewer than one batch of "
                         f"{cfg.batch}; lower --batch")
    sampler = _EpochSampler(len(view), seed, torch.utils.data.distributed.DistributedSampler(
        view, seed=cfg.seed, drop_last=True) if dist_info.enabled else None)
    loader = torch.utils.data.DataLoader(
        view, batch_size=cfg.batch, sampler=sampler, drop_last=True,
        num_workers=cfg.workers, worker_init_fn=_worker_init if cfg.workers > 0 else None,
        persistent_workers=cfg.workers > 0, pin_memory=device.type == "cuda")

    model = create_model(cfg.model, num_classes, **cfg.model_kwargs).to(device)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    if cfg.init_weights and start is None:
        fresh = load_init_weights(model, cfg.model, cfg.init_weights)
        if is_main:
            log.info("initialised from %s (%s)", cfg.init_weights,
                     f"fresh: {', '.join(fresh)}" if fresh else "all tensors")
    optimizer = build_optimizer(cfg, model)
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    step, epoch, elapsed_before = 0, 0, 0.0
    best: dict[str, Any] = {}
    if start is not None:
        model.load_state_dict(start.state_dict)
        optimizer.load_state_dict(start.resume_state["optimizer"])
        if "scaler" in start.resume_state and scaler.is_enabled():
            scaler.load_state_dict(start.resume_state["scaler"])
        step, epoch = start.step, start.epoch
        elapsed_before = float(start.metrics.get("elapsed_s", 0.0))
        # best.pt of another folder is not here: this folder's best.pt is the best trained here
        best = dict(start.best_metrics) if (out / "best.pt").exists() else {}
        if is_main:
            log.info("resumed from %s at epoch %d, step %d", start.path, epoch, step)

    train_model: torch.nn.Module = model
    if dist_info.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    criterion = SegmentationLoss(train_ds.ignore_index, _class_weight_tensor(cfg, train_ds, device),
                                 ohem_fraction=cfg.ohem_fraction, label_smoothing=cfg.label_smoothing).to(device)
    mean_t = torch.tensor(cfg.mean, device=device).view(1, 3, 1, 1) * 255.0
    inv_std_t = 1.0 / (torch.tensor(cfg.std, device=device).view(1, 3, 1, 1) * 255.0)

    steps_per_epoch = len(loader)
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps > 0:
        total_steps = min(total_steps, cfg.max_steps)
    budget_s = cfg.time_budget_min * 60.0
    t_start = time.perf_counter() - elapsed_before
    images_seen, t_images = 0, time.perf_counter()

    def progress_fraction() -> float:
        frac = step / max(1, total_steps)
        if budget_s > 0:
            frac = max(frac, (time.perf_counter() - t_start) / budget_s)
        return min(1.0, frac)

    # Exports default to the resolution the model was validated at (CamVid: 360x480), not the crop.
    deploy_size = _native_size(val_ds) or cfg.imgsz

    def make_ckpt(metrics: dict[str, Any]) -> Checkpoint:
        return Checkpoint(
            model_name=cfg.model, model_kwargs=dict(cfg.model_kwargs),
            state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
            classes=list(train_ds.classes), palette=[list(map(int, c)) for c in train_ds.palette],
            ignore_index=int(train_ds.ignore_index), mean=list(cfg.mean), std=list(cfg.std),
            input_size=list(deploy_size), dataset={"layout": str(train_ds.name), "root": _portable_root(train_ds.root)},
            epoch=epoch, step=step, metrics=metrics, best_metrics=best,
            train_config=cfg.to_dict(), edgeseg_version=__version__,
            resume_state={"optimizer": optimizer.state_dict(),
                          **({"scaler": scaler.state_dict()} if scaler.is_enabled() else {})})

    last_path, best_path = out / "last.pt", out / "best.pt"
    finished = progress_fraction() >= 1.0
    last_metrics: dict[str, Any] = dict(start.metrics) if start else {}
    # A run interrupted mid-epoch resumes with that epoch's next batch (the order is fixed by seed and epoch).
    done_in_epoch = max(0, step - epoch * steps_per_epoch) if start is not None else 0
    while not finished and epoch < cfg.epochs:
        if done_in_epoch >= steps_per_epoch:  # saved after the epoch's last batch, before its end-of-epoch work
            epoch, done_in_epoch = epoch + 1, 0
            continue
        sampler.start(epoch, skip=done_in_epoch * cfg.batch)
        torch.manual_seed(_epoch_seed(seed, epoch))  # dropout and the like: replayable per epoch too
        steps_this_epoch = steps_per_epoch - done_in_epoch
        done_in_epoch = 0
        train_model.train()
        loss_sum, loss_n = 0.0, 0
        lr = cfg.lr
        try:
            label = epoch_label(epoch, cfg.epochs, time.perf_counter() - t_start, budget_s)
            with Progress(steps_this_epoch, label, enabled=show_progress and is_main) as bar:
                for images, labels in loader:
                    lr = poly_lr(cfg, step, progress_fraction())
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    images = images.to(device, non_blocking=True)
                    labels = labels.to(device, non_blocking=True)  # (N, H, W) int64
                    x = (images.permute(0, 3, 1, 2).float() - mean_t) * inv_std_t  # (N, 3, H, W)
                    x = x.contiguous(memory_format=memory_format)
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                        logits = train_model(x)  # (N, C, H, W)
                    loss = criterion(logits, labels)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower --lr")
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    step += 1
                    images_seen += images.shape[0] * dist_info.world_size
                    loss_sum += float(loss.detach())
                    loss_n += 1
                    elapsed = time.perf_counter() - t_start
                    bar.update(1, loss=loss_sum / loss_n, lr=lr,
                               left=f"{(1 - progress_fraction()) * elapsed / max(progress_fraction(), 1e-9) / 60:.0f}min")
                    if progress_fraction() >= 1.0:
                        finished = True
                        break
            epoch += 1
            train_loss = all_reduce_mean(loss_sum / max(1, loss_n), dist_info, device)
            rate = images_seen / max(1e-9, time.perf_counter() - t_images)
            elapsed = time.perf_counter() - t_start
            validate = finished or epoch >= cfg.epochs or epoch % max(1, cfg.val_every) == 0
            if is_main:
                row: dict[str, Any] = {"epoch": epoch, "step": step, "lr": lr, "train_loss": train_loss,
                                       "val_miou": "", "val_pixel_acc": "", "images_per_s": rate,
                                       "elapsed_min": elapsed / 60}
                if validate:
                    metrics = evaluate_model(model, val_ds, mean=cfg.mean, std=cfg.std, device=device,
                                             channels_last=cfg.channels_last, amp=use_amp,
                                             max_images=cfg.val_max_images)
                    last_metrics = {**metrics.to_dict(), "epoch": epoch, "split": val_ds.split}
                    row.update(val_miou=metrics.miou, val_pixel_acc=metrics.pixel_accuracy)
                    if not best or metrics.miou > float(best.get("miou", -math.inf)):
                        best = dict(last_metrics)
                        save_checkpoint(make_ckpt(last_metrics), best_path, with_resume_state=False)
                    log.info("epoch %d: loss %.4f, val mIoU %.2f (best %.2f), %.1f img/s",
                             epoch, train_loss, metrics.miou, float(best["miou"]), rate)
                _append_metrics(out / "metrics.csv", row)
                save_checkpoint(make_ckpt({**last_metrics, "elapsed_s": elapsed}), last_path)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM, in a step or in the end-of-epoch work: keep the progress
            if is_main:
                save_checkpoint(make_ckpt({**last_metrics, "elapsed_s": time.perf_counter() - t_start}), last_path)
                log.warning("interrupted: saved %s; continue with --resume %s", last_path, last_path)
            raise
        barrier(dist_info)

    if is_main and not best_path.exists():  # e.g. resumed a finished run: still leave a best.pt
        save_checkpoint(make_ckpt(last_metrics), best_path, with_resume_state=False)
    return TrainResult(out_dir=out, best_path=best_path, last_path=last_path, best_metrics=best, epochs=epoch,
                       steps=step, images_per_s=images_seen / max(1e-9, time.perf_counter() - t_images),
                       elapsed_s=time.perf_counter() - t_start)
