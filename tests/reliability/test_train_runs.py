"""Training never replaces an earlier run silently, and a resume says which options it honours."""

from __future__ import annotations

import pytest

from edgeseg.cli import main

pytest.importorskip("torch")

TINY = ["--data", "synthetic://?n=8&size=32x48&seed=1", "--imgsz", "32x48", "--batch", "4", "--epochs", "1",
        "--workers", "0", "--quiet", "--model-arg", "base=4", "--threads", "1"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


def test_a_fresh_run_over_an_earlier_one_is_refused(run_dir, capsys) -> None:
    before = (run_dir / "best.pt").read_bytes(), (run_dir / "metrics.csv").read_text()
    capsys.readouterr()
    assert main(["train", *TINY, "--out", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already holds a run" in err and "--exist-ok" in err
    assert ((run_dir / "best.pt").read_bytes(), (run_dir / "metrics.csv").read_text()) == before


def test_exist_ok_replaces_the_run_and_starts_its_metrics_anew(run_dir, tmp_path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    rows = len((copy / "metrics.csv").read_text().splitlines())
    assert main(["train", *TINY, "--out", str(copy), "--exist-ok"]) == 0
    assert len((copy / "metrics.csv").read_text().splitlines()) == rows  # not appended to


@pytest.mark.parametrize(("extra", "refused"), [
    (["--max-steps", "2"], "--max-steps"),
    (["--lr", "0.1", "--imgsz", "64x64", "--seed", "3"], "--imgsz, --lr, --seed"),
])
def test_resume_refuses_options_it_cannot_honour(run_dir, capsys, extra, refused) -> None:
    before = (run_dir / "last.pt").read_bytes()
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir / "last.pt"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"cannot apply {refused};" in err, err
    assert (run_dir / "last.pt").read_bytes() == before


def test_resume_applies_the_options_it_honours(run_dir, tmp_path, monkeypatch) -> None:
    import shutil

    import edgeseg.train.trainer as trainer

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    seen = {}
    real = trainer._train

    def spy(cfg, *a, **kw):
        seen.update(workers=cfg.workers, val_every=cfg.val_every, epochs=cfg.epochs, imgsz=cfg.imgsz)
        return real(cfg, *a, **kw)

    monkeypatch.setattr(trainer, "_train", spy)
    assert main(["train", "--resume", str(copy / "last.pt"), "--epochs", "2", "--val-every", "2", "--quiet",
                 "--threads", "1"]) == 0
    assert seen == {"workers": 0, "val_every": 2, "epochs": 2, "imgsz": (32, 48)}
