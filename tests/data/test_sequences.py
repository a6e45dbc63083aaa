"""Leave-one-sequence-out splits: grouping by file-name prefix, hold-out, joined splits, clear errors."""

from __future__ import annotations

import pytest

from edgeseg.data import build_dataset
from edgeseg.data.sequences import (
    CAMVID_SEQUENCES,
    group_by_sequence,
    holdout_split,
    load_holdout,
    parse_sequences,
    sequence_folds,
    sequence_of,
)
from edgeseg.runtime.errors import DatasetError, UsageError
from tests.testkit import data_trees as dt

camvid_tree = dt.camvid_sequence_tree
TRAIN = dt.CAMVID_TRAIN_NAMES


def test_sequence_of_camvid_names_and_longest_prefix_wins():
    assert sequence_of("0016E5_07959.png") == "0016E5"
    assert sequence_of("Seq05VD_f00000.png") == "Seq05VD"
    assert sequence_of("Seq05VD_x.png", ["Seq05", "Seq05VD"]) == "Seq05VD"
    assert sequence_of("aachen_000000_000019.png", ["auto"]) == "aachen"


@pytest.mark.parametrize("name, prefixes", [("frame_001.png", CAMVID_SEQUENCES), ("nounderscore.png", ("auto",))])
def test_a_file_without_a_known_prefix_is_named(name, prefixes):
    with pytest.raises(DatasetError, match=name):
        sequence_of(name, prefixes)


def test_parse_sequences():
    assert parse_sequences("") == CAMVID_SEQUENCES
    assert parse_sequences(()) == CAMVID_SEQUENCES
    assert parse_sequences("A, B") == ("A", "B")
    with pytest.raises(UsageError, match="auto"):
        parse_sequences("auto,A")


def test_holdout_joins_train_and_val_and_keeps_sequences_apart(tmp_path):
    root = camvid_tree(tmp_path)
    train, val = load_holdout(root, "0016E5", cache=True)
    names = lambda ds: sorted(p.stem for p, _ in ds.files)  # noqa: E731
    assert names(val) == ["0016E5_00390", "0016E5_00420", "0016E5_07959"]
    assert names(train) == ["0001TP_006690", "0001TP_006720", "0006R0_f01230", "Seq05VD_f00000"]
    assert val.split == "0016E5" and len(val) == 3 and val.cached and train.cached
    # the cached pairs follow their files: a held-out item is the same pair as read from disk
    image, label = val[2]
    fresh = build_dataset(root, "val")[0]
    assert (image == fresh[0]).all() and (label == fresh[1]).all()


def test_folds_list_the_sequences_present(tmp_path):
    root = camvid_tree(tmp_path)
    ds = build_dataset(root, "train")
    assert sequence_folds(ds) == ["0001TP", "0006R0", "0016E5"]
    assert {k: len(v) for k, v in group_by_sequence(ds).items()} == {"0001TP": 2, "0006R0": 1, "0016E5": 2}


def test_absent_or_only_sequence_is_refused_with_what_is_there(tmp_path):
    root = camvid_tree(tmp_path)
    with pytest.raises(UsageError, match="sequences present: 0001TP, 0006R0, 0016E5, Seq05VD"):
        load_holdout(root, "Seq06XX")
    only = camvid_tree(tmp_path / "one", train=["0016E5_1", "0016E5_2"], val=["0016E5_3"])
    with pytest.raises(UsageError, match="nothing to train on"):
        holdout_split(build_dataset(only, "train"), "0016E5")


def test_unknown_file_in_the_folder_fails_before_training(tmp_path):
    root = camvid_tree(tmp_path, train=[*TRAIN, "frame_0001"])
    with pytest.raises(DatasetError, match="frame_0001.png starts with none of the known sequences"):
        load_holdout(root, "0001TP")

