"""The training loop on procedural scenes: it learns, checkpoints round-trip, resume works, bad input is clear."""

from __future__ import annotations

import csv

import pytest
import torch

from edgeseg.cli import main
from edgeseg.runtime.errors import CheckpointError, UsageError
from edgeseg.train.checkpoint import load_checkpoint, load_model, save_checkpoint
from edgeseg.train.config import TrainConfig
from edgeseg.train.trainer import train

DATA = "synthetic://?n=16&size=64x96&seed=3"


class Evil:  # any class outside torch's allow-list must be refused by weights_only loading
    pass


def small_config(tmp_path, **kw) -> TrainConfig:
    base = dict(model="unet_lite", data=DATA, out=str(tmp_path / "run"), imgsz=(64, 96), scale=(0.75, 1.25),
                epochs=2, batch=4, lr=5e-3, workers=0, warmup_steps=2, threads=2, cache=True)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    cfg = small_config(tmp, epochs=4)
    return cfg, train(cfg, progress=False)


def test_short_training_lowers_the_loss_and_writes_outputs(trained):
    cfg, result = trained
    rows = list(csv.DictReader(open(result.out_dir / "metrics.csv")))
    assert len(rows) == 4
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < 0.8 * losses[0], losses
    assert all(r["val_miou"] for r in rows)
    assert result.best_path.exists() and result.last_path.exists()
    assert 0.0 <= result.best_metrics["miou"] <= 100.0


def test_checkpoint_loads_with_weights_only_and_carries_its_facts(trained):
    cfg, result = trained
    raw = torch.load(result.best_path, weights_only=True)  # must not need pickle of arbitrary objects
    assert raw["format"] == "edgeseg.checkpoint"
    model, ckpt = load_model(result.best_path)
    assert ckpt.model_name == "unet_lite" and ckpt.input_size == [64, 96]  # native val size
    assert len(ckpt.classes) == len(ckpt.palette) > 1
    assert ckpt.best_metrics["miou"] == pytest.approx(result.best_metrics["miou"])
    assert "optimizer" not in raw  # best.pt is for deployment; last.pt carries the resume state
    assert "optimizer" in torch.load(result.last_path, weights_only=True)
    meta = ckpt.meta()
    assert meta.classes == tuple(ckpt.classes) and len(meta.source_sha256) == 64
    x = torch.randn(1, 3, 61, 83)
    assert model(x).shape == (1, len(ckpt.classes), 61, 83)


def test_resume_continues_from_last(tmp_path):
    cfg = small_config(tmp_path, epochs=1)
    first = train(cfg, progress=False)
    again = train(small_config(tmp_path, epochs=100), resume=first.last_path, progress=False)
    assert again.epochs == 1 and again.steps == first.steps  # the saved run's epochs, not the config default
    resumed = train(small_config(tmp_path), resume=first.last_path, progress=False, resume_epochs=2)
    assert resumed.epochs == 2 and resumed.steps == 2 * first.steps
    rows = list(csv.DictReader(open(first.out_dir / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]


def test_a_run_interrupted_mid_epoch_resumes_where_it_stopped(tmp_path, monkeypatch):
    """Same batches, same augmentation, same weights as a run that was never interrupted."""
    from edgeseg.train import trainer

    kw = dict(data="synthetic://?n=12&size=48x64&seed=3", epochs=2, threads=1, cache=False, scale=(0.5, 1.5),
              imgsz=(32, 48))  # 3 steps of 4 images an epoch
    whole = train(small_config(tmp_path / "whole", **kw), progress=False)
    getitem = trainer._TrainView.__getitem__
    keys: list = []

    def interrupted_getitem(self, key):
        if len(keys) == 4 * 4:  # loading the second batch of epoch 2: Ctrl-C
            raise KeyboardInterrupt
        keys.append(key)
        return getitem(self, key)

    monkeypatch.setattr(trainer._TrainView, "__getitem__", interrupted_getitem)
    with pytest.raises(KeyboardInterrupt):
        train(small_config(tmp_path / "cut", **kw), progress=False)
    cut = load_checkpoint(tmp_path / "cut" / "run" / "last.pt")
    assert (cut.epoch, cut.step) == (1, 4)
    keys.clear()
    monkeypatch.setattr(trainer._TrainView, "__getitem__", lambda self, key: keys.append(key) or getitem(self, key))
    resumed = train(small_config(tmp_path / "cut", **kw), resume=cut.path, progress=False)
    assert resumed.steps == whole.steps == 6 and resumed.epochs == 2
    assert len(keys) == 2 * 4 and {e for e, _ in keys} == {1}  # the epoch's last two batches, no more
    a = load_checkpoint(whole.last_path).state_dict
    b = load_checkpoint(resumed.last_path).state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fine_tuning_starts_from_the_given_weights(trained, tmp_path):
    from edgeseg.models import create_model
    from edgeseg.train.trainer import load_init_weights

    _, result = trained
    source, _ = load_model(result.best_path)
    fresh_model = create_model("unet_lite", source.state_dict()["head.conv.bias"].numel())
    left = load_init_weights(fresh_model, "unet_lite", str(result.best_path))
    assert left == []
    for k, v in source.state_dict().items():
        assert torch.equal(fresh_model.state_dict()[k], v), k
    # Another class count: everything but the classifier carries over.
    other = create_model("unet_lite", 3)
    left = load_init_weights(other, "unet_lite", str(result.best_path))
    assert left and all(other.state_dict()[k].shape != source.state_dict()[k].shape for k in left)
    with pytest.raises(UsageError, match="--model unet_lite"):
        load_init_weights(create_model("fcn8s_lite", 3), "fcn8s_lite", str(result.best_path))
    tuned = train(small_config(tmp_path, epochs=1, init_weights=str(result.best_path)), progress=False)
    assert tuned.best_metrics["miou"] >= 0.0 and tuned.epochs == 1


def test_max_steps_stops_early(tmp_path):
    result = train(small_config(tmp_path, epochs=50, max_steps=3), progress=False)
    assert result.steps == 3


def test_resume_from_best_is_refused(trained):
    _, result = trained
    with pytest.raises(CheckpointError, match="resume from last.pt"):
        train(TrainConfig(data=DATA), resume=result.best_path, progress=False)


def test_non_edgeseg_checkpoints_are_refused_clearly(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not an edgeseg checkpoint"):
        load_checkpoint(plain)

    pickled = tmp_path / "evil.pt"
    torch.save({"format": "edgeseg.checkpoint", "x": Evil()}, pickled)
    with pytest.raises(CheckpointError, match=r"Evil\).*weights_only=True") as err:
        load_checkpoint(pickled)
    assert "weights_only=False" not in str(err.value)  # never advise the unsafe way

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a zip")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_checkpoint(garbage)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_with_wrong_weights_names_the_model(trained, tmp_path):
    _, result = trained
    ckpt = load_checkpoint(result.best_path)
    ckpt.model_kwargs = {"width": 2.0}  # weights no longer fit
    broken = save_checkpoint(ckpt, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="do not fit model 'unet_lite'"):
        load_model(broken)


# -- CLI ---------------------------------------------------------------------------------------
def test_cli_train_and_val_end_to_end(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["train", "--model", "unet_lite", "--data", DATA, "--imgsz", "48x64", "--epochs", "1",
                 "--batch", "4", "--workers", "0", "--out", str(out), "--quiet", "--json", str(tmp_path / "t.json")])
    assert code == 0
    assert "best_miou" in capsys.readouterr().out
    # trained on 48x64 crops, validated on 64x96 scenes: exports default to the validated size
    assert load_checkpoint(out / "best.pt").input_size == [64, 96]
    code = main(["val", str(out / "best.pt"), "--split", "val", "--quiet", "--json", str(tmp_path / "v.json")])
    assert code == 0
    text = capsys.readouterr().out
    assert "mIoU" in text and "void ignored" in text


def test_cli_trains_a_final_model_on_train_and_val(tmp_path, capsys, caplog):
    from tests.testkit import data_trees as dt

    caplog.set_level("INFO")
    root = dt.camvid_sequence_tree(tmp_path / "camvid")
    code = main(["train", "--data", str(root), "--train-split", "train+val", "--imgsz", "12x16", "--batch", "2",
                 "--max-steps", "2", "--workers", "0", "--out", str(tmp_path / "final"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert "scores images the model trains on" in caplog.text
    ckpt = load_checkpoint(tmp_path / "final" / "last.pt")
    assert ckpt.train_config["train_split"] == "train+val"


@pytest.mark.parametrize("argv,expected", [
    (["train", "--model", "unet_lit", "--data", DATA], "did you mean 'unet_lite'"),
    (["train", "--data", "/nonexistent/dataset", "--max-steps", "1"], "/nonexistent/dataset"),
    (["train", "--data", DATA, "--imgsz", "64x", "--max-steps", "1"], "--imgsz"),
    (["train", "--data", DATA, "--optimizer", "adam"], "unknown optimizer"),
    (["train", "--data", DATA, "--train-split", "train+val", "--holdout-sequence", "0006R0"], "drop --train-split"),
    (["train", "--data", DATA, "--train-split", "train+nope", "--max-steps", "1"], "nope"),
    (["val", "/nonexistent/best.pt"], "does not exist"),
    (["val", "/nonexistent/best.pt", "--max-images", "-1"], "--max-images -1 must be at least 0"),
    (["val", "/nonexistent/best.pt", "--threads", "0"], "--threads 0 must be at least 1"),
])
def test_cli_bad_input_gives_one_line_and_nonzero_exit(argv, expected, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0
    assert expected in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_unknown_command_suggests_the_close_one(capsys):
    assert main(["trian"]) == 2
    assert "did you mean 'train'" in capsys.readouterr().err


def test_checkpoint_records_an_absolute_dataset_folder(tmp_path, monkeypatch):
    from edgeseg.train.trainer import _portable_root

    monkeypatch.chdir(tmp_path)
    assert _portable_root("data/camvid") == str(tmp_path / "data" / "camvid")
    assert _portable_root("synthetic://?n=4") == "synthetic://?n=4"


def test_exported_model_given_as_checkpoint_is_named(tmp_path):
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"onnx")
    with pytest.raises(CheckpointError, match="exported model, not a training checkpoint"):
        load_checkpoint(onnx_file)


def test_resume_from_another_directory_into_another_folder(tmp_path, monkeypatch):
    """The dataset path is stored absolute; a new output folder keeps its own best.pt and best metrics."""
    from testkit.data_trees import image, label, write

    root = tmp_path / "cv"
    for split, n in (("train", 4), ("val", 2)):
        for i in range(n):
            write(root / split / f"f{i}.png", image(i, 48, 64))
            write(root / f"{split}annot" / f"f{i}.png", label([3, 0, 8, 11], 48, 64))
    monkeypatch.chdir(tmp_path)
    kw = dict(data="cv", imgsz=(32, 48), batch=2, cache=False, threads=1)
    first = train(small_config(tmp_path / "a", epochs=1, **kw), progress=False)
    assert load_checkpoint(first.last_path).train_config["data"] == str(root.resolve())
    monkeypatch.chdir(root / "train")  # where "cv" means nothing
    resumed = train(small_config(tmp_path / "b", **kw), resume=first.last_path, progress=False, resume_epochs=2)
    assert resumed.epochs == 2 and resumed.best_path.parent == tmp_path / "b" / "run"
    assert resumed.best_metrics["epoch"] == 2  # validated in this folder, where best.pt lives
    assert load_checkpoint(resumed.best_path).best_metrics["epoch"] == 2
