"""Training configuration: one frozen dataclass; CLI flags only fill it in."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from edgeseg.runtime.errors import UsageError
from edgeseg.runtime.metadata import IMAGENET_MEAN, IMAGENET_STD

OPTIMIZERS = ("sgd", "adamw")
CLASS_WEIGHTING = ("none", "median", "sqrt_median")
# At batch 1 a crop of 32 or less on both sides is 1x1 at stride 32, where BatchNorm in training
# mode raises "Expected more than 1 value per channel"; 64 keeps the deepest map at least 2x2.
MIN_CROP_BATCH1 = 64


@dataclass(frozen=True)
class TrainConfig:
    model: str = "unet_lite"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    data: str = "synthetic://"  # dataset root or synthetic:// URI
    layout: str = "auto"
    train_split: str = "train"
    val_split: str = "val"
    out: str = "runs/train"
    imgsz: tuple[int, int] = (360, 480)  # training crop (H, W); validation runs at native size
    scale: tuple[float, float] = (0.5, 2.0)  # random rescale before the crop: the small-data workhorse
    flip: bool = True
    photometric: bool = True
    augment: tuple[str, ...] = ()  # robustness augmentations by name (data.robust_transforms), off by default
    epochs: int = 100
    batch: int = 8
    optimizer: str = "adamw"
    lr: float = 2e-3  # AdamW default; SGD wants ~0.01-0.05
    weight_decay: float = 1e-4
    momentum: float = 0.9
    poly_power: float = 0.9  # poly LR: lr * (1 - progress) ** power
    warmup_steps: int = 100  # linear warm-up keeps BN statistics sane in the first steps
    class_weighting: str = "sqrt_median"  # plain median-frequency over-predicts rare classes (docs/training.md)
    class_weight_cap: float = 5.0
    ohem_fraction: float = 0.0  # >0: keep only the hardest fraction of pixels in the loss
    label_smoothing: float = 0.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    device: str = "auto"
    amp: bool = True  # used on CUDA only
    channels_last: bool = True  # faster convolutions on x86 CPUs too (docs/training.md)
    workers: int = 2
    cache: bool = True  # decode images once into RAM
    seed: int = 0
    max_steps: int = 0  # >0: stop after this many optimizer steps (smoke runs)
    time_budget_min: float = 0.0  # >0: the LR schedule follows wall-clock time and training stops on time
    val_every: int = 1  # epochs between validations
    val_max_images: int = 0  # >0: validate on the first N images only (fast feedback)
    threads: int = 0  # torch intra-op threads; 0 = all cores
    init_weights: str = ""  # checkpoint to start from (fine-tuning); tensors whose shape differs start fresh
    # >"": train on the other sequences of train_split + val_split and validate on this one (honest CV)
    holdout_sequence: str = ""
    sequences: tuple[str, ...] = ()  # file-name prefixes that name the sequences; () = CamVid's, ("auto",)

    def __post_init__(self) -> None:
        from edgeseg.data.robust_transforms import parse_augment

        parse_augment(self.augment)  # an unknown name fails here, not after the dataset loads
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.class_weighting not in CLASS_WEIGHTING:
            raise UsageError(f"unknown class weighting {self.class_weighting!r}; "
                             f"choose one of {', '.join(CLASS_WEIGHTING)}")
        for name in ("epochs", "batch"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise UsageError(f"--lr must be > 0, got {self.lr}")
        if not (0 < self.scale[0] <= self.scale[1]):
            raise UsageError(f"--scale {self.scale[0]}-{self.scale[1]} must be a range of positive factors, min <= max")
        if not 0.0 <= self.ohem_fraction < 1.0:
            raise UsageError(f"--ohem must be in [0, 1), got {self.ohem_fraction}")
        if not self.weight_decay >= 0:
            raise UsageError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if not self.class_weight_cap > 0:
            raise UsageError(f"--class-weight-cap must be > 0, got {self.class_weight_cap}")
        if not self.time_budget_min >= 0:
            raise UsageError(f"--time-budget must be >= 0 minutes (0 = no budget), got {self.time_budget_min}")
        # Checked here, not after the first epoch (validation) or at DataLoader start (workers).
        if self.val_max_images < 0:
            raise UsageError(f"--val-images {self.val_max_images} must be at least 0 "
                             "(0 = validate on all images)")
        if self.workers < 0:
            raise UsageError(f"--workers {self.workers} must be at least 0 "
                             "(0 = load data in the main process)")
        h, w = self.imgsz
        if self.batch == 1 and h < MIN_CROP_BATCH1 and w < MIN_CROP_BATCH1:
            raise UsageError(f"--imgsz {h}x{w} is too small for --batch 1: BatchNorm needs more than one "
                             "value per channel, and the deepest (stride-32) layers would see about one; "
                             f"use --batch 2 or more, or a crop of at least {MIN_CROP_BATCH1} on one side")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("imgsz", "scale", "mean", "std", "sequences", "augment"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for k in ("imgsz", "scale", "mean", "std", "sequences", "augment"):
            if k in kw:
                kw[k] = tuple(kw[k])
        return cls(**kw)
