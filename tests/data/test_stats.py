"""Class frequencies and weights against hand-computed values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from testkit.data_trees import image, label, write

from edgeseg.data import build_dataset, class_frequencies, class_stats, class_weights
from edgeseg.runtime.errors import UsageError


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    # Two 12x16 labels (192 px). Stripes of 4 columns = 48 px each.
    #   a: Sky(0), Road(3), Road(3), void(11)   -> Sky 48, Road 96, void 48
    #   b: Road(3), Car(8), Car(8), Car(8)      -> Road 48, Car 144
    root = tmp_path / "cv"
    for name, values in (("a", [0, 3, 3, 11]), ("b", [3, 8, 8, 8])):
        write(root / "train" / f"{name}.png", image(0))
        write(root / "trainannot" / f"{name}.png", label(values))
    return root


def test_counts_and_frequencies(tiny: Path) -> None:
    ds = build_dataset(tiny, "train")
    st = class_stats(ds)
    expected = np.zeros(11, int)
    expected[[0, 3, 8]] = [48, 144, 144]
    np.testing.assert_array_equal(st.counts, expected)
    assert st.total == 336 and st.images == 2  # void never counts
    # presence: Sky only in a (144 labelled px), Road in both (336), Car only in b (192)
    freq = st.frequencies()
    assert freq[0] == pytest.approx(48 / 144) and freq[3] == pytest.approx(144 / 336)
    assert freq[8] == pytest.approx(144 / 192) and freq[1] == 0
    np.testing.assert_allclose(class_frequencies(ds, mode="global")[[0, 3, 8]], [48 / 336, 144 / 336, 144 / 336])
    with pytest.raises(UsageError, match="mode"):
        st.frequencies("bogus")


def test_weights() -> None:
    freqs = np.array([0.1, 0.4, 0.0, 0.025])
    # median of the seen classes (0.1, 0.4, 0.025) is 0.1
    np.testing.assert_allclose(class_weights(freqs, "median"), [1.0, 0.25, 1.0, 4.0])
    np.testing.assert_allclose(class_weights(freqs, "sqrt_median"), [1.0, 0.5, 1.0, 2.0])
    np.testing.assert_allclose(class_weights(freqs, "median", cap=3.0), [1.0, 0.25, 1.0, 3.0])
    np.testing.assert_allclose(class_weights(freqs, "none"), [1, 1, 1, 1])
    assert class_weights(freqs).dtype == np.float32
    with pytest.raises(UsageError, match="did_not_exist|unknown"):
        class_weights(freqs, "did_not_exist")


def test_camvid_weights_are_sensible(camvid_root: Path) -> None:
    ds = build_dataset(camvid_root, "val")
    w = class_weights(class_frequencies(ds, limit=20), "median")
    classes = ds.classes
    assert w[classes.index("Road")] < 1 < w[classes.index("Pole")]  # common classes down, rare up
