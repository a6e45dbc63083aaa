"""Split a dataset by the video sequence each frame came from (leave-one-sequence-out validation).

Frames of one sequence are near-duplicates of each other, so a validation split cut from the
same sequences as the training split measures memory more than generalisation: CamVid's val
split (part of sequence 0016E5, whose other frames are in train) overestimates unseen sequences
by about 10 mIoU points. Holding out a whole sequence measures what a new street would score.

A frame's sequence is the prefix of its file name: CamVid names every frame
``<sequence>_<frame>.png`` with the sequences ``0001TP``, ``0006R0``, ``0016E5`` and ``Seq05VD``.
Any dataset whose file names carry a sequence prefix can be split the same way, with its own
prefix list or ``"auto"`` (the name up to the first ``_``, e.g. Cityscapes' city names).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeseg.runtime.errors import DatasetError, UsageError

from .base import SegDataset

CAMVID_SEQUENCES = ("0001TP", "0006R0", "0016E5", "Seq05VD")
AUTO = "auto"  # the sequence is the file name up to its first "_"


def parse_sequences(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"A,B,C"``, a list, ``"auto"`` or None/empty (CamVid's sequences) -> the prefix tuple."""
    if text is None or text == "" or (not isinstance(text, str) and not list(text)):
        return CAMVID_SEQUENCES
    items = text.split(",") if isinstance(text, str) else list(text)
    prefixes = tuple(s.strip() for s in items if s.strip())
    if not prefixes:
        raise UsageError(f"sequence list {text!r} names no sequence; write e.g. 0001TP,0006R0 or 'auto'")
    if AUTO in prefixes and len(prefixes) > 1:
        raise UsageError(f"sequence list {text!r}: 'auto' cannot be mixed with named prefixes")
    return prefixes


def _file_name(item: Any) -> str:
    """The file name of a dataset entry's image (``files`` holds (image, label) pairs)."""
    image = item[0] if isinstance(item, (tuple, list)) else item
    return Path(os.fspath(image)).name if isinstance(image, (str, os.PathLike)) else str(image)


def sequence_of(name: str, prefixes: Sequence[str] = CAMVID_SEQUENCES) -> str:
    """The sequence a file name belongs to; DatasetError when it carries none of ``prefixes``."""
    if tuple(prefixes) == (AUTO,):
        head, sep, _ = name.partition("_")
        if sep and head:
            return head
        raise DatasetError(f"file {name} has no sequence prefix (expected NAME_... with an '_'); "
                           "rename it or list the sequence prefixes explicitly")
    # Longest first: a prefix that is the start of another ("Seq05", "Seq05VD") must not win.
    for prefix in sorted(prefixes, key=len, reverse=True):
        if name.startswith(prefix):
            return prefix
    raise DatasetError(f"file {name} starts with none of the known sequences ({', '.join(prefixes)}); "
                       "remove it, rename it, or pass its prefix in the sequence list")


def group_by_sequence(dataset: SegDataset, prefixes: Sequence[str] = CAMVID_SEQUENCES) -> dict[str, list[int]]:
    """Sequence -> indices of ``dataset`` (in file order); every file must belong to one sequence."""
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(dataset.files):
        groups.setdefault(sequence_of(_file_name(item), prefixes), []).append(i)
    return groups


def subset(dataset: SegDataset, indices: Sequence[int], split: str) -> SegDataset:
    """A copy of ``dataset`` holding only ``indices`` (cached pairs carried over), named ``split``."""
    if not indices:
        raise DatasetError(f"split {split!r} of {dataset.root} would be empty")
    part = copy.copy(dataset)
    part.files = [dataset.files[i] for i in indices]
    part._cache = None if dataset._cache is None else [dataset._cache[i] for i in indices]
    part.split = split
    return part


def concat(datasets: Sequence[SegDataset], split: str) -> SegDataset:
    """One dataset holding the files of several splits of the same dataset (same layout and classes)."""
    first = datasets[0]
    for other in datasets[1:]:
        if type(other) is not type(first) or list(other.classes) != list(first.classes):
            raise DatasetError(f"cannot join {first.split!r} and {other.split!r} of {first.root}: "
                               "they differ in layout or classes")
    joined = copy.copy(first)
    joined.files = [f for ds in datasets for f in ds.files]
    caches = [ds._cache for ds in datasets]
    joined._cache = None if any(c is None for c in caches) else [p for c in caches for p in c]
    joined.split = split
    return joined


def holdout_split(dataset: SegDataset, holdout: str, prefixes: Sequence[str] = CAMVID_SEQUENCES
                  ) -> tuple[SegDataset, SegDataset]:
    """(train: every other sequence, val: sequence ``holdout``) of ``dataset``."""
    groups = group_by_sequence(dataset, prefixes)
    if holdout not in groups:
        raise UsageError(f"sequence {holdout!r} is not in {dataset.root} ({dataset.split}); "
                         f"sequences present: {', '.join(sorted(groups))}")
    if len(groups) < 2:
        raise UsageError(f"{dataset.root} ({dataset.split}) holds only sequence {holdout!r}; "
                         "holding it out would leave nothing to train on")
    rest = [i for seq, idx in groups.items() if seq != holdout for i in idx]
    return (subset(dataset, sorted(rest), f"{dataset.split}-without-{holdout}"),
            subset(dataset, groups[holdout], holdout))


def sequence_folds(dataset: SegDataset, prefixes: Sequence[str] = CAMVID_SEQUENCES) -> list[str]:
    """The sequences present, sorted: fold ``k`` holds out ``sequence_folds(...)[k]``."""
    return sorted(group_by_sequence(dataset, prefixes))


def load_holdout(root: str | os.PathLike, holdout: str, splits: Sequence[str] = ("train", "val"),
                 layout: str = "auto", prefixes: Sequence[str] = CAMVID_SEQUENCES, cache: bool = False
                 ) -> tuple[SegDataset, SegDataset]:
    """Join ``splits`` of the dataset at ``root`` and hold out one sequence: (train, val)."""
    from .build import build_dataset

    parts = [build_dataset(root, s, layout=layout) for s in splits]
    train, val = holdout_split(concat(parts, "+".join(splits)), holdout, prefixes)
    if cache:  # decode only after the split: nothing is read twice
        train.preload()
        val.preload()
    return train, val
