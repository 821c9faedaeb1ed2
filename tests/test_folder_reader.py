"""Folder reader: tiny PIL images in tmp_path, labels in every accepted spelling, one test per error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facebias.data.celeba import LANDMARK_COLUMNS, require_split
from facebias.data.folder import FolderFormatError, read_folder


def make_images(root: Path, names: list[str]) -> None:
    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (12, 10), (i * 20 % 256, 0, 0)).save(root / name)


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    names = ["a/1.png", "a/2.png", "b/3.jpg", "4.png"]
    make_images(tmp_path / "img", names)
    return tmp_path


def test_labels_in_every_spelling_and_explicit_split(folder: Path) -> None:
    csv = write_csv(
        folder / "labels.csv",
        "path,male,glasses,smile,split",
        [
            "a/1.png,1,-1,true,train",
            "a/2.png,0,1,False,val",
            "b/3.jpg, 1 ,+1,TRUE,2",
            "4.png,0,-1,false,test",
        ],
    )
    table = read_folder(folder / "img", csv, label_columns=["male", "glasses", "smile"], split_column="split")
    assert table.source == "folder" and table.image_dir == folder / "img"
    assert table.filenames == ("a/1.png", "a/2.png", "b/3.jpg", "4.png")
    assert table.attr_names == ("male", "glasses", "smile")
    assert table.attrs.tolist() == [[1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 0]]
    assert table.split.tolist() == [0, 1, 2, 2]
    assert table.landmarks is None and table.identity is None


def test_label_columns_default_to_every_other_column(folder: Path) -> None:
    csv = write_csv(
        folder / "labels.csv", "path,male,split", ["a/1.png,1,0", "a/2.png,0,1", "b/3.jpg,1,2", "4.png,0,0"]
    )
    table = read_folder(folder / "img", csv, split_column="split")
    assert table.attr_names == ("male",)


def test_seeded_random_split_has_the_asked_sizes(tmp_path: Path) -> None:
    names = [f"{i}.png" for i in range(40)]
    make_images(tmp_path / "img", names)
    csv = write_csv(tmp_path / "l.csv", "path,y", [f"{name},{i % 2}" for i, name in enumerate(names)])
    first = read_folder(tmp_path / "img", csv, seed=3, val_fraction=0.25, test_fraction=0.1)
    assert np.bincount(first.split, minlength=3).tolist() == [26, 10, 4]
    again = read_folder(tmp_path / "img", csv, seed=3, val_fraction=0.25, test_fraction=0.1)
    other = read_folder(tmp_path / "img", csv, seed=4, val_fraction=0.25, test_fraction=0.1)
    assert first.split.tolist() == again.split.tolist() != other.split.tolist()


def test_landmark_columns_become_landmarks(folder: Path) -> None:
    header = "path,y," + ",".join(LANDMARK_COLUMNS)
    rows = [
        f"{name},1," + ",".join(str(10 * k + i) for k in range(10))
        for i, name in enumerate(["a/1.png", "4.png"])
    ]
    table = read_folder(folder / "img", write_csv(folder / "l.csv", header, rows))
    assert table.attr_names == ("y",)
    assert table.landmarks.shape == (2, 5, 2)
    assert table.landmarks[1].tolist() == [[1, 11], [21, 31], [41, 51], [61, 71], [81, 91]]


def test_missing_image_names_row_and_column(folder: Path) -> None:
    csv = write_csv(folder / "l.csv", "path,y", ["a/1.png,1", "a/9.png,0"])
    with pytest.raises(
        FolderFormatError, match=r"l\.csv, line 3, column 'path': image .*a/9\.png does not exist"
    ):
        read_folder(folder / "img", csv)


def test_non_binary_label_names_row_and_column(folder: Path) -> None:
    csv = write_csv(folder / "l.csv", "path,y,z", ["a/1.png,1,0", "a/2.png,1,2"])
    with pytest.raises(FolderFormatError, match=r"l\.csv, line 3, column 'z': '2' is not a binary label"):
        read_folder(folder / "img", csv)


def test_missing_columns_are_named(folder: Path) -> None:
    csv = write_csv(folder / "l.csv", "file,y", ["a/1.png,1"])
    with pytest.raises(FolderFormatError, match=r"line 1: no column 'path'; columns are file, y"):
        read_folder(folder / "img", csv)
    with pytest.raises(FolderFormatError, match=r"no label column 'male'"):
        read_folder(folder / "img", csv, path_column="file", label_columns=["male"])
    with pytest.raises(FolderFormatError, match=r"no column 'split'"):
        read_folder(folder / "img", csv, path_column="file", split_column="split")
    partial = write_csv(folder / "p.csv", "path,y,lefteye_x,lefteye_y", ["a/1.png,1,3,4"])
    with pytest.raises(FolderFormatError, match=r"landmark columns are partial, missing righteye_x"):
        read_folder(folder / "img", partial)


def test_duplicate_path_names_both_rows(folder: Path) -> None:
    csv = write_csv(folder / "l.csv", "path,y", ["a/1.png,1", "4.png,0", "a/1.png,0"])
    with pytest.raises(FolderFormatError, match=r"line 4, column 'path': a/1\.png already appears on line 2"):
        read_folder(folder / "img", csv)


def test_bad_split_value_and_empty_split(folder: Path) -> None:
    csv = write_csv(folder / "l.csv", "path,y,s", ["a/1.png,1,train", "a/2.png,0,holdout"])
    with pytest.raises(FolderFormatError, match=r"line 3, column 's': unknown split 'holdout'"):
        read_folder(folder / "img", csv, split_column="s")
    csv = write_csv(folder / "l.csv", "path,y,s", ["a/1.png,1,train", "a/2.png,0,train"])
    table = read_folder(folder / "img", csv, split_column="s")  # only train is required by default
    assert table.listed_in == csv and table.row_origin(1) == f"line 3 of {csv}"
    with pytest.raises(
        ValueError, match=r"l\.csv assigns no image to the test split \(2 train, 0 val, 0 test\)"
    ):
        require_split(table, "test")
    with pytest.raises(
        FolderFormatError,
        match=r"l\.csv: column 's' assigns no image to the val split \(2 train, 0 val, 0 test\); write val \(or 1\)",
    ):
        read_folder(folder / "img", csv, split_column="s", require_splits=("train", "val", "test"))
    csv = write_csv(folder / "l.csv", "path,y,s", ["a/1.png,1,val", "a/2.png,0,test"])
    with pytest.raises(FolderFormatError, match=r"column 's' assigns no image to the train split"):
        read_folder(folder / "img", csv, split_column="s")


def test_random_split_too_small_for_a_split(folder: Path) -> None:
    csv = write_csv(folder / "l.csv", "path,y", ["a/1.png,1", "a/2.png,0", "b/3.jpg,1", "4.png,0"])
    with pytest.raises(
        FolderFormatError,
        match=r"l\.csv: the seeded random split of its 4 rows puts no image in the val split "
        r"\(val_fraction=0\.1; 4 train, 0 val, 0 test\); raise data\.folder\.val_fraction",
    ):
        read_folder(folder / "img", csv, require_splits=("train", "val", "test"))
    table = read_folder(
        folder / "img", csv, val_fraction=0.25, test_fraction=0.25, require_splits=("train", "val", "test")
    )
    assert np.bincount(table.split, minlength=3).tolist() == [2, 1, 1]
    with pytest.raises(
        FolderFormatError, match=r"no image in the train split .*lower data\.folder\.val_fraction"
    ):
        read_folder(folder / "img", csv, val_fraction=0.5, test_fraction=0.4)


def test_path_outside_root_and_ragged_row(folder: Path) -> None:
    with pytest.raises(FolderFormatError, match=r"line 2, column 'path': '../x.png' is not a path inside"):
        read_folder(folder / "img", write_csv(folder / "l.csv", "path,y", ["../x.png,1"]))
    with pytest.raises(FolderFormatError, match=r"line 3: 3 fields but the header has 2"):
        read_folder(folder / "img", write_csv(folder / "l.csv", "path,y", ["a/1.png,1", "a/2.png,1,0"]))
