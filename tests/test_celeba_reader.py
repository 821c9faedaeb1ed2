"""CelebA reader: real sample rows checked against the files, and one broken copy per error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facebias.data.celeba import CelebAFormatError, read_celeba, require_split

SAMPLE = Path(__file__).parent / "data" / "celeba_sample"
NAMES = [f"{i:06d}.jpg" for i in range(1, 11)]


def rewrite_line(path: Path, line_number: int, new_line: str) -> None:
    lines = path.read_text().splitlines()
    lines[line_number - 1] = new_line
    path.write_text("\n".join(lines) + "\n")


def test_real_sample_labels_landmarks_identity_and_split() -> None:
    table = read_celeba(SAMPLE)
    assert table.source == "celeba"
    assert table.image_dir == SAMPLE / "img_align_celeba"
    assert table.filenames == tuple(NAMES)  # ten rows read although line 1 says 202599
    assert len(table.attr_names) == 40 and table.attr_names[0] == "5_o_Clock_Shadow"
    assert table.attrs.dtype == np.uint8 and set(np.unique(table.attrs)) <= {0, 1}
    assert [table.filenames[i] for i in np.flatnonzero(table.attr("Male"))] == [
        "000003.jpg",
        "000007.jpg",
        "000008.jpg",
    ]
    assert [table.filenames[i] for i in np.flatnonzero(table.attr("Smiling"))] == [
        "000001.jpg",
        "000002.jpg",
        "000009.jpg",
    ]
    assert table.attr("Eyeglasses").sum() == 0
    # row of 000001 in list_attr_celeba.txt, first and last five values
    assert table.attrs[0, :5].tolist() == [0, 1, 1, 0, 0] and table.attrs[0, -5:].tolist() == [0, 1, 0, 0, 1]
    assert table.landmarks.shape == (10, 5, 2) and table.landmarks.dtype == np.float32
    assert table.landmarks[0].ravel().tolist() == [69, 109, 106, 113, 77, 142, 73, 152, 108, 154]
    assert table.landmarks[9].ravel().tolist() == [68, 111, 108, 112, 89, 136, 70, 151, 107, 151]
    assert table.identity[0] == 2880 and table.identity[9] == 612
    assert table.bbox is None  # the sample ships no list_bbox_celeba.txt
    assert table.indices("train").tolist() == list(range(10))
    assert table.indices("val").size == 0 and table.indices("test").size == 0


def test_source_tag_can_be_overridden_for_synthfaces() -> None:
    assert read_celeba(SAMPLE, source="synthfaces").source == "synthfaces"


def test_unknown_attribute_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="Eyeglases.*Eyeglasses"):
        read_celeba(SAMPLE).attr("Eyeglases")


def test_crlf_padding_and_trailing_spaces_read_identically(sample_copy: Path) -> None:
    for name in (
        "list_attr_celeba.txt",
        "list_eval_partition.txt",
        "list_landmarks_align_celeba.txt",
        "identity_CelebA.txt",
    ):
        path = sample_copy / name
        lines = path.read_text().splitlines()
        path.write_bytes(
            ("\r\n".join("  " + line.replace(" ", "   ") + " \t " for line in lines) + "\r\n\r\n").encode()
        )
    original, crlf = read_celeba(SAMPLE), read_celeba(sample_copy)
    assert crlf.filenames == original.filenames and crlf.attr_names == original.attr_names
    for field in ("attrs", "split", "landmarks", "identity"):
        np.testing.assert_array_equal(getattr(crlf, field), getattr(original, field))


def test_rows_are_joined_by_name_not_position(sample_copy: Path) -> None:
    for name in ("list_eval_partition.txt", "identity_CelebA.txt"):
        path = sample_copy / name
        path.write_text("\n".join(reversed(path.read_text().splitlines())) + "\n")
    lm = sample_copy / "list_landmarks_align_celeba.txt"
    lines = lm.read_text().splitlines()
    lm.write_text("\n".join(lines[:2] + lines[:1:-1]) + "\n")
    part = sample_copy / "list_eval_partition.txt"
    part.write_text(part.read_text().replace("000004.jpg 0", "000004.jpg 2"))
    table = read_celeba(sample_copy)
    assert table.landmarks[0].ravel().tolist() == [69, 109, 106, 113, 77, 142, 73, 152, 108, 154]
    assert table.identity.tolist() == [2880, 2937, 8692, 5805, 9295, 4153, 9040, 6369, 3332, 612]
    assert table.indices("test").tolist() == [3]


def test_optional_bbox_file_is_read(sample_copy: Path) -> None:
    rows = "".join(f"{name}    {i} {i + 1}  {i + 2} {i + 3}\n" for i, name in enumerate(NAMES))
    (sample_copy / "list_bbox_celeba.txt").write_text("202599\nimage_id x_1 y_1 width height \n" + rows)
    table = read_celeba(sample_copy)
    assert table.bbox.tolist()[2] == [2, 3, 4, 5]


def test_wrong_column_count_names_file_and_line(sample_copy: Path) -> None:
    path = sample_copy / "list_attr_celeba.txt"
    line = path.read_text().splitlines()[6]  # line 7: 000005.jpg
    rewrite_line(path, 7, line + "  1")
    with pytest.raises(
        CelebAFormatError, match=r"list_attr_celeba\.txt, line 7: expected 41 columns.*found 42"
    ):
        read_celeba(sample_copy)
    rewrite_line(path, 7, line.rsplit(" ", 1)[0])
    with pytest.raises(CelebAFormatError, match=r"line 7: expected 41 columns.*found 40"):
        read_celeba(sample_copy)


def test_landmark_row_with_missing_value(sample_copy: Path) -> None:
    rewrite_line(
        sample_copy / "list_landmarks_align_celeba.txt", 3, "000001.jpg    69   109   106   113    77"
    )
    with pytest.raises(
        CelebAFormatError, match=r"list_landmarks_align_celeba\.txt, line 3: expected 11 columns"
    ):
        read_celeba(sample_copy)


@pytest.mark.parametrize("bad", ["0", "2", "x"])
def test_attribute_value_other_than_plus_minus_one(sample_copy: Path, bad: str) -> None:
    path = sample_copy / "list_attr_celeba.txt"
    tokens = path.read_text().splitlines()[4].split()  # line 5: 000003.jpg
    tokens[21] = bad  # Male is the 21st attribute
    rewrite_line(path, 5, " ".join(tokens))
    expected = (
        r"line 5.*Male of 000003\.jpg is " + bad
        if bad != "x"
        else r"line 5, column 22: 'x' is not an integer"
    )
    with pytest.raises(CelebAFormatError, match=r"list_attr_celeba\.txt, " + expected):
        read_celeba(sample_copy)


def test_partition_value_out_of_range(sample_copy: Path) -> None:
    rewrite_line(sample_copy / "list_eval_partition.txt", 4, "000004.jpg 3")
    with pytest.raises(
        CelebAFormatError, match=r"list_eval_partition\.txt, line 4: split of 000004\.jpg is 3"
    ):
        read_celeba(sample_copy)


def test_missing_image_is_named(sample_copy: Path) -> None:
    (sample_copy / "img_align_celeba" / "000006.jpg").unlink()
    with pytest.raises(CelebAFormatError, match=r"1 image\(s\).*missing.*000006\.jpg \(line 8\)"):
        read_celeba(sample_copy)


def test_missing_partition_row_and_extra_partition_row(sample_copy: Path) -> None:
    part = sample_copy / "list_eval_partition.txt"
    lines = part.read_text().splitlines()
    part.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(
        CelebAFormatError,
        match=r"1 image\(s\) of list_attr_celeba\.txt have no row in list_eval_partition\.txt \(first: 000010\.jpg, line 12",
    ):
        read_celeba(sample_copy)
    part.write_text("\n".join([*lines, "999999.jpg 0"]) + "\n")
    with pytest.raises(
        CelebAFormatError,
        match=r"list_eval_partition\.txt have no row in list_attr_celeba\.txt \(first: 999999\.jpg\)",
    ):
        read_celeba(sample_copy)


def test_duplicate_row_is_named(sample_copy: Path) -> None:
    part = sample_copy / "list_eval_partition.txt"
    part.write_text(part.read_text() + "000002.jpg 1\n")
    with pytest.raises(CelebAFormatError, match=r"000002\.jpg appears twice, on lines 2 and 11"):
        read_celeba(sample_copy)


def test_missing_root_or_required_file(tmp_path: Path, sample_copy: Path) -> None:
    with pytest.raises(CelebAFormatError, match=r"does not exist.*list_attr_celeba\.txt.*img_align_celeba"):
        read_celeba(tmp_path / "nowhere")
    (sample_copy / "list_landmarks_align_celeba.txt").unlink()
    with pytest.raises(
        CelebAFormatError, match=r"lacks list_landmarks_align_celeba\.txt; expected CelebA's layout"
    ):
        read_celeba(sample_copy)


def test_missing_count_line(sample_copy: Path) -> None:
    path = sample_copy / "list_attr_celeba.txt"
    path.write_text("\n".join(path.read_text().splitlines()[1:]) + "\n")
    with pytest.raises(CelebAFormatError, match=r"list_attr_celeba\.txt, line 1: expected the image count"):
        read_celeba(sample_copy)


def test_empty_split_errors_where_required(sample_copy: Path) -> None:
    table = read_celeba(sample_copy)  # all ten in train: val and test empty is fine at read time
    assert require_split(table, "train").tolist() == list(range(10))
    with pytest.raises(
        CelebAFormatError,
        match=r"celeba/list_eval_partition\.txt assigns no image to the val split \(partition 1\): its 10 rows "
        r"are 10 train, 0 val, 0 test; use the official partition file or set some rows to 1",
    ):
        require_split(table, "val")
    with pytest.raises(
        CelebAFormatError,
        match=r"list_eval_partition\.txt assigns no image to the test split \(partition 2\)",
    ):
        read_celeba(sample_copy, require_splits=("train", "test"))
    part = sample_copy / "list_eval_partition.txt"
    part.write_text(part.read_text().replace(" 0", " 1"))
    with pytest.raises(
        CelebAFormatError, match=r"no image to the train split \(partition 0\).*0 train, 10 val"
    ):
        read_celeba(sample_copy)


def test_synthfaces_empty_split_points_at_its_option(sample_copy: Path) -> None:
    table = read_celeba(sample_copy, source="synthfaces")
    with pytest.raises(CelebAFormatError, match=r"no image to the val split.*data\.synth\.split"):
        require_split(table, "val")


def test_rows_know_their_line_in_the_attribute_file(sample_copy: Path) -> None:
    table = read_celeba(sample_copy)
    assert table.listed_in == sample_copy / "list_attr_celeba.txt"
    assert table.row_origin(2) == f"line 5 of {sample_copy / 'list_attr_celeba.txt'}"  # 000003.jpg
