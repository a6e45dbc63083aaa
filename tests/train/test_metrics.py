import numpy as np
import pytest

from edgeseg.runtime.metrics import ConfusionMatrix, pixel_agreement


def test_confusion_matrix_against_hand_computed_values():
    # 3 classes, ignore 255. Ground truth rows, predictions columns.
    target = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 2]])
    cm = ConfusionMatrix(3, ignore_index=255)
    cm.update(pred, target)
    expected = np.array([[1, 1, 0],   # class 0: one right, one predicted as 1
                         [0, 2, 1],   # class 1: two right, one predicted as 2
                         [1, 0, 1]])  # class 2: one right, one predicted as 0
    np.testing.assert_array_equal(cm.mat, expected)
    # IoU = TP / (TP + FP + FN): class 0: 1/(1+1+1), class 1: 2/(2+1+1), class 2: 1/(1+1+1)
    np.testing.assert_allclose(cm.iou(), [1 / 3, 2 / 4, 1 / 3])
    assert cm.miou() == pytest.approx((1 / 3 + 1 / 2 + 1 / 3) / 3)
    assert cm.pixel_accuracy() == pytest.approx(4 / 7)  # the ignored pixel is not counted


def test_void_pixels_are_ignored_strictly_even_when_predicted_as_a_class():
    cm = ConfusionMatrix(2, ignore_index=11)
    cm.update(np.array([0, 1, 1]), np.array([0, 1, 11]))
    assert cm.mat.sum() == 2
    assert cm.miou() == 1.0


def test_absent_classes_are_nan_and_skipped_in_the_mean():
    cm = ConfusionMatrix(3, ignore_index=255)
    cm.update(np.array([0, 0, 1]), np.array([0, 0, 1]))
    iou = cm.iou()
    assert np.isnan(iou[2])
    assert cm.miou() == 1.0
    summary = cm.summary(["a", "b", "c"])
    assert summary.per_class_iou["c"] is None
    assert summary.miou == pytest.approx(100.0)


def test_update_accumulates_and_checks_shapes():
    cm = ConfusionMatrix(2, ignore_index=None)
    cm.update(np.zeros((2, 2)), np.zeros((2, 2)))
    cm.update(np.ones((2, 2)), np.zeros((2, 2)))
    assert cm.mat.tolist() == [[4, 4], [0, 0]]
    with pytest.raises(ValueError, match="does not match"):
        cm.update(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="outside"):
        cm.update(np.full((2, 2), 5), np.zeros((2, 2)))


def test_pixel_agreement():
    a = np.array([[1, 2], [3, 4]])
    b = np.array([[1, 2], [3, 0]])
    assert pixel_agreement(a, b) == 0.75


def test_evaluation_refuses_a_negative_image_count():
    from edgeseg.runtime.errors import UsageError
    from edgeseg.train.evaluate import evaluate_segmenter

    with pytest.raises(UsageError, match="max_images -1 must be at least 0"):
        evaluate_segmenter(object(), [object()] * 3, max_images=-1)  # refused before anything is run
