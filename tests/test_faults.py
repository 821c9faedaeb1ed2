"""Faults that used to end in a traceback late in a run: each now fails before any image is cached or
any model trained, naming the file (or option) and the fix. Built on the real ten-image CelebA sample."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from PIL import Image

from facebias.data import cache
from facebias.data.celeba import CelebAFormatError
from facebias.data.datamodule import FaceDataModule
from facebias.data.folder import FolderFormatError
from facebias.data.table import UnknownAttributeError
from facebias.training.report import log_test_table

SAMPLE = Path(__file__).parent / "data" / "celeba_sample"
# 000001..000006 train, 000007..000008 val, 000009..000010 test (the official file has all ten in train)
THREE_SPLITS = [0, 0, 0, 0, 0, 0, 1, 1, 2, 2]


def celeba_copy(tmp_path: Path, splits: list[int] = THREE_SPLITS) -> Path:
    root = tmp_path / "celeba"
    shutil.copytree(SAMPLE, root)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    (root / "list_eval_partition.txt").write_text(
        "".join(f"{i:06d}.jpg {s}\n" for i, s in enumerate(splits, start=1))
    )
    return root


@pytest.fixture
def no_cache(monkeypatch: pytest.MonkeyPatch):
    """Fail the test if the data module gets as far as building the image cache."""

    def must_not_cache(*args, **kwargs):
        raise AssertionError("the image cache was built before the fault was reported")

    monkeypatch.setattr(cache, "image_cache", must_not_cache)


def datamodule(root: Path, tmp_path: Path, **options) -> FaceDataModule:
    options = {"source": "celeba", "root": str(root), "data_dir": str(tmp_path / "data"), "progress": False,
               "image_size": 32, **options}
    return FaceDataModule(**options)


# -- empty splits ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("split, value", [("val", 1), ("test", 2)])
def test_celeba_partition_without_a_split_fails_before_the_cache(tmp_path, no_cache, split, value) -> None:
    root = celeba_copy(tmp_path, [s if s != value else 0 for s in THREE_SPLITS])
    with pytest.raises(
        CelebAFormatError,
        match=rf"celeba/list_eval_partition\.txt assigns no image to the {split} split \(partition {value}\): "
        r"its 10 rows are \d+ train, \d+ val, \d+ test; use the official partition file or set some rows to "
        rf"{value}",
    ):
        datamodule(root, tmp_path).setup("fit")


def test_folder_split_column_without_test_rows_fails_before_the_cache(tmp_path, no_cache) -> None:
    (tmp_path / "img").mkdir()
    rows = []
    for i, split in enumerate(["train", "train", "val", "val"]):
        Image.new("RGB", (16, 16), (40 * i, 0, 0)).save(tmp_path / "img" / f"{i}.png")
        rows.append(f"{i}.png,{i % 2},{split}")
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join(["path,Male,split", *rows]) + "\n")
    folder = {"csv_path": str(csv), "split_column": "split"}
    with pytest.raises(
        FolderFormatError,
        match=r"labels\.csv: column 'split' assigns no image to the test split \(2 train, 2 val, 0 test\); "
        r"write test \(or 2\) on some rows",
    ):
        datamodule(tmp_path / "img", tmp_path, source="folder", folder=folder, crop="none").setup()


@pytest.mark.parametrize(
    "splits, options, message",
    [
        ([0] * 8 + [2, 2], [], "list_eval_partition.txt assigns no image to the val split (partition 1)"),
        (THREE_SPLITS, ["data.concept=Eyeglases"], "data.concept names 'Eyeglases' (did you mean 'Eyeglasses'?)"),
    ],
)
def test_train_py_stops_before_the_run_starts(tmp_path: Path, splits, options, message) -> None:
    """The empty val split used to train and then die in `predict` ("'NoneType' object is not
    subscriptable"); now check_config reads the annotations and stops before the run directory exists."""
    root = celeba_copy(tmp_path, splits)
    out = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "train.py"), "data=celeba", f"data.root={root}", "data.concept=null",
           *options, f"paths.data_dir={tmp_path / 'data'}", f"hydra.run.dir={out}", "logger=none",
           "trainer.accelerator=cpu", "callbacks.progress_bar=null", "model.backbone=small_cnn",
           "data.image_size=32"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "NoneType" not in result.stderr
    assert not (out / "run.json").exists() and not (tmp_path / "data" / "cache").exists()


def test_check_config_checks_the_synthfaces_split_option() -> None:
    from conftest import compose

    from facebias.training.task import check_config

    cfg = compose(["data.synth.n_faces=30", "+data.synth.split=[0.9,0.1,0.0]"])
    with pytest.raises(ValueError, match=r"data\.synth\.split=\[0\.9, 0\.1, 0\.0\] of data\.synth\.n_faces=30 "
                       r"gives the test split no image"):
        check_config(cfg)


# -- unknown attributes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options, message",
    [
        ({"concept": "Eyeglases"}, r"data\.concept names 'Eyeglases' \(did you mean 'Eyeglasses'\?\)"),
        ({"concept": "Eyeglasses", "protected": "male"}, r"data\.protected names 'male' \(did you mean 'Male'\?\)"),
        ({"targets": ["Smiling", "Gender"]}, r"data\.targets names 'Gender'"),
    ],
)
def test_unknown_celeba_attribute_fails_before_the_cache(tmp_path, no_cache, options, message) -> None:
    root = celeba_copy(tmp_path)
    with pytest.raises(
        UnknownAttributeError,
        match=r"^unknown attribute for the celeba data \(.*celeba/list_attr_celeba\.txt\): " + message
        + r".*It has: 5_o_Clock_Shadow, Arched_Eyebrows, .*Eyeglasses, .*Male, .*Young$",
    ):
        datamodule(root, tmp_path, **options).setup("fit")


def test_every_unknown_option_is_named_at_once(tmp_path, no_cache) -> None:
    root = celeba_copy(tmp_path)
    with pytest.raises(KeyError, match=r"data\.concept names 'Glasses'.*; data\.protected names 'Race'"):
        datamodule(root, tmp_path, concept="Glasses", protected="Race").setup()


def test_folder_without_male_needs_data_protected(tmp_path, no_cache) -> None:
    (tmp_path / "img").mkdir()
    for i in range(10):
        Image.new("RGB", (16, 16), (20 * i, 0, 0)).save(tmp_path / "img" / f"{i}.png")
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join(["path,smiling", *(f"{i}.png,{i % 2}" for i in range(10))]) + "\n")
    folder = {"csv_path": str(csv), "val_fraction": 0.2, "test_fraction": 0.2}
    with pytest.raises(
        UnknownAttributeError,
        match=r"folder data \(.*labels\.csv\): data\.protected is null, so the protected attribute defaults to "
        r"'Male', which this source lacks: set data\.protected\. It has: smiling$",
    ):
        datamodule(tmp_path / "img", tmp_path, source="folder", folder=folder, crop="none",
                   targets=["smiling"]).setup()


def test_valid_options_still_build(tmp_path: Path) -> None:
    """The checks do not reject what works: three splits, known attributes, the default protected Male."""
    dm = datamodule(celeba_copy(tmp_path), tmp_path, targets=["Smiling"])
    dm.setup("fit")
    assert dm.protected == "Male" and dm.images.shape == (10, 32, 32, 3)
    assert [len(dm.dataset(s)) for s in ("train", "val", "test")] == [6, 2, 2]


# -- the threshold of training's per-cell accuracies ------------------------------------------------------------
class FakeWandbLogger:
    def __init__(self) -> None:
        self.tables: dict[str, tuple[list, list]] = {}
        self.experiment = type("Run", (), {"summary": {}})()

    def log_table(self, key, columns, data) -> None:
        self.tables[key] = (columns, data)


def test_wandb_cell_table_states_its_threshold() -> None:
    logger = FakeWandbLogger()
    cells = {"y1_c1": {"accuracy": 0.9, "count": 5}, "y0_c0": {"accuracy": 0.8, "count": 5}}
    log_test_table(logger, {"threshold": 0.5, "test_cells": cells, "test": {"acc": 0.85}, "test_gap": {"gap": 0.1}})
    columns, data = logger.tables["test/cell_accuracy"]
    assert columns == ["cell", "meaning", "threshold", "accuracy", "count"]
    assert data[0] == ["y1_c1", "target=1, concept=1", 0.5, 0.9, 5]
    assert logger.experiment.summary == {"test/acc": 0.85, "test/threshold": 0.5, "test/gap_gap": 0.1}
