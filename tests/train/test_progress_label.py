"""The training progress label: no 'epoch 1/10000' when a time budget sets the schedule."""

from __future__ import annotations

from edgeseg.train.trainer import epoch_label


def test_epoch_label_follows_what_drives_the_schedule() -> None:
    assert epoch_label(2, 50, 30.0, 0.0) == "epoch 3/50"
    assert epoch_label(0, 10_000, 90.0, 120.0) == "epoch 1, 1.5 of 2 min"
