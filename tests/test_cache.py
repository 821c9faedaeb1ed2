"""Decoded-image cache: pixels against a direct decode, reuse, invalidation, corruption, concurrency."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facebias.data import cache
from facebias.data.cache import CorruptCacheWarning, ImageDecodeError, image_cache
from facebias.data.celeba import read_celeba
from facebias.data.table import FaceTable

SAMPLE = Path(__file__).parent / "data" / "celeba_sample"


def face_pixels(path: Path) -> np.ndarray:
    """Rows 57..184, cols 25..152 of the decoded frame, taken by numpy slicing (independent of cache.py)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))[57:185, 25:153]


def only_cache_file(cache_dir: Path) -> Path:
    (npy,) = cache_dir.glob("*.npy")
    return npy


def test_full_size_cache_is_the_reference_crop(tmp_path: Path) -> None:
    table = read_celeba(SAMPLE)
    images = image_cache(table, 128, tmp_path, progress=False, num_workers=1)
    assert isinstance(images, np.memmap) and images.shape == (10, 128, 128, 3) and images.dtype == np.uint8
    assert not images.flags.writeable
    for row, name in enumerate(table.filenames):
        np.testing.assert_array_equal(images[row], face_pixels(table.image_dir / name))
    meta = json.loads(only_cache_file(tmp_path).with_suffix(".json").read_text())
    assert meta["shape"] == [10, 128, 128, 3] and meta["fields"]["crop"] == "celeba"
    assert meta["crc32"] == cache.array_checksum(np.asarray(images))


def test_resized_cache_equals_pil_bilinear_of_the_crop(tmp_path: Path) -> None:
    table = read_celeba(SAMPLE)
    images = image_cache(table, 64, tmp_path, progress=True, num_workers=1)
    for row, name in enumerate(table.filenames):
        expected = Image.fromarray(face_pixels(table.image_dir / name)).resize(
            (64, 64), Image.Resampling.BILINEAR
        )
        np.testing.assert_array_equal(images[row], np.asarray(expected))


def test_worker_pool_gives_the_same_pixels(tmp_path: Path) -> None:
    table = read_celeba(SAMPLE)
    serial = np.array(image_cache(table, 32, tmp_path / "serial", progress=False, num_workers=1))
    pooled = image_cache(table, 32, tmp_path / "pooled", progress=False, num_workers=2)
    np.testing.assert_array_equal(pooled, serial)
    assert [p.name for p in (tmp_path / "pooled").iterdir() if ".tmp" in p.name] == []


def test_second_call_reuses_the_cache_without_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = read_celeba(SAMPLE)
    first = np.array(image_cache(table, 32, tmp_path, progress=False, num_workers=1))
    stamp = only_cache_file(tmp_path).stat().st_mtime_ns

    def must_not_decode(*args, **kwargs):
        raise AssertionError("decoded an image although the cache was valid")

    monkeypatch.setattr(cache, "decode_image", must_not_decode)
    second = image_cache(table, 32, tmp_path, progress=False, num_workers=1)
    np.testing.assert_array_equal(second, first)
    assert only_cache_file(tmp_path).stat().st_mtime_ns == stamp


def test_changed_source_image_invalidates(sample_copy: Path, tmp_path: Path) -> None:
    table = read_celeba(sample_copy)
    before = np.array(image_cache(table, 128, tmp_path / "c", progress=False, num_workers=1))
    changed = sample_copy / "img_align_celeba" / "000004.jpg"
    Image.new("RGB", (178, 218), (200, 10, 10)).save(changed)
    after = image_cache(table, 128, tmp_path / "c", progress=False, num_workers=1)
    np.testing.assert_array_equal(after[3], face_pixels(changed))
    assert not np.array_equal(after[3], before[3])
    np.testing.assert_array_equal(after[:3], before[:3])


@pytest.mark.parametrize("damage", ["truncate", "garble", "drop_metadata", "wrong_shape"])
def test_corrupt_cache_is_reported_and_rebuilt(tmp_path: Path, damage: str) -> None:
    table = read_celeba(SAMPLE)
    good = np.array(image_cache(table, 32, tmp_path, progress=False, num_workers=1))
    npy = only_cache_file(tmp_path)
    if damage == "truncate":
        os.truncate(npy, npy.stat().st_size - 1000)
    elif damage == "garble":
        with open(npy, "r+b") as handle:
            handle.seek(npy.stat().st_size - 500)
            handle.write(bytes(100))
    elif damage == "drop_metadata":
        npy.with_suffix(".json").unlink()
    else:
        np.save(npy, good[:5])
    with pytest.warns(CorruptCacheWarning, match=f"{npy.name} is corrupt.*rebuilding"):
        rebuilt = image_cache(table, 32, tmp_path, progress=False, num_workers=1)
    np.testing.assert_array_equal(rebuilt, good)


def test_two_processes_started_together_build_one_cache(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, time
        from facebias.data import cache
        from facebias.data.celeba import read_celeba
        decoded = []
        real_decode = cache.decode_image
        def slow_decode(*args):
            decoded.append(args[0])
            time.sleep(0.1)  # keep the build long enough for the processes to overlap
            return real_decode(*args)
        cache.decode_image = slow_decode
        images = cache.image_cache(read_celeba({str(SAMPLE)!r}), 32, {str(tmp_path / "c")!r}, progress=False, num_workers=1)
        npy = next(p for p in os.scandir({str(tmp_path / "c")!r}) if p.name.endswith(".npy"))
        print(len(decoded), os.stat(npy.path).st_ino, int(images.sum()))
        """
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        results.append(out.split())
    assert sorted(int(r[0]) for r in results) == [0, 10]  # one built, the other waited and reused
    assert results[0][1:] == results[1][1:]  # same file (inode) and same pixels
    assert sorted(p.suffix for p in (tmp_path / "c").iterdir()) == [".json", ".lock", ".npy"]


def test_wrong_frame_size_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    for name in ("ok.png", "small.png"):
        Image.new("RGB", (178, 218) if name == "ok.png" else (100, 120)).save(tmp_path / "img" / name)
    table = FaceTable(
        source="folder",
        image_dir=tmp_path / "img",
        filenames=("ok.png", "small.png"),
        attr_names=("y",),
        attrs=np.zeros((2, 1), np.uint8),
        split=np.zeros(2, np.int8),
    )
    with pytest.raises(
        ImageDecodeError,
        match=r"small\.png \(row 1 of the folder table\) is 100x120, but crop='celeba' needs .*178x218.*crop='none'",
    ):
        image_cache(table, 32, tmp_path / "c", progress=False, num_workers=1)
    with pytest.raises(ImageDecodeError, match=r"small\.png \(row 1 of the folder table\) is 100x120"):
        image_cache(table, 32, tmp_path / "c", progress=False, num_workers=2)
    assert list((tmp_path / "c").glob("*.npy*")) == []


def leftovers(cache_dir: Path) -> list[str]:
    """Everything a build left in the cache dir except its lock file."""
    return sorted(p.name for p in cache_dir.iterdir() if p.suffix != ".lock") if cache_dir.exists() else []


@pytest.mark.parametrize("num_workers", [1, 2])
def test_truncated_jpeg_is_named_with_its_row_and_leaves_no_cache(
    sample_copy: Path, tmp_path: Path, num_workers: int
) -> None:
    """A real CelebA JPEG cut to half its bytes: the error names the file and its annotation line, the
    failed build leaves nothing a later build could mistake for a cache, and after the file is restored
    the cache builds and holds the true pixels."""
    image = sample_copy / "img_align_celeba" / "000003.jpg"
    intact = image.read_bytes()
    image.write_bytes(intact[: len(intact) // 2])
    table = read_celeba(sample_copy)
    attr_file = sample_copy / "list_attr_celeba.txt"
    expected = (
        rf"cannot decode image {re.escape(str(image))} \(line 5 of {re.escape(str(attr_file))}\): "
        r"the file is truncated or corrupt \(Pillow: image file is truncated \(\d+ bytes not processed\)\); "
        r"replace it with an intact copy, or remove its row from the annotations$"
    )
    cache_dir = tmp_path / "c"
    for _ in range(2):  # a second try fails the same way: no half-written cache is served
        with pytest.raises(ImageDecodeError, match=expected):
            image_cache(table, 128, cache_dir, progress=False, num_workers=num_workers)
        assert leftovers(cache_dir) == []
    image.write_bytes(intact)
    images = image_cache(table, 128, cache_dir, progress=False, num_workers=num_workers)
    np.testing.assert_array_equal(images[2], face_pixels(SAMPLE / "img_align_celeba" / "000003.jpg"))
    assert [p.suffix for p in map(Path, leftovers(cache_dir))] == [".json", ".npy"]


@pytest.mark.parametrize(
    "content, reason",
    [
        (bytes(range(256)) * 16, r"not an image Pillow can identify \(garbage bytes"),
        (b"", r"not an image Pillow can identify"),
        # a real JPEG header, then garbage
        ("header", r"the file is truncated or corrupt \(Pillow: cannot load this image\)"),
    ],
)
def test_garbage_image_is_named_with_its_row(sample_copy: Path, tmp_path: Path, content, reason: str) -> None:
    image = sample_copy / "img_align_celeba" / "000008.jpg"
    if content == "header":
        content = image.read_bytes()[:600] + bytes(range(256)) * 16
    image.write_bytes(content)
    table = read_celeba(sample_copy)
    where = rf"{re.escape(str(image))} \(line 10 of {re.escape(str(sample_copy / 'list_attr_celeba.txt'))}\)"
    with pytest.raises(ImageDecodeError, match=rf"cannot decode image {where}: {reason}"):
        image_cache(table, 32, tmp_path / "c", progress=False, num_workers=2)
    assert leftovers(tmp_path / "c") == []


def test_crop_none_takes_the_centre_square(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    picture = np.zeros((20, 30, 3), np.uint8)
    picture[:, :5] = (255, 0, 0)
    picture[:, 5:25] = (0, 255, 0)
    picture[:, 25:] = (0, 0, 255)
    Image.fromarray(picture).save(tmp_path / "img" / "wide.png")
    table = FaceTable(
        "folder", tmp_path / "img", ("wide.png",), ("y",), np.zeros((1, 1), np.uint8), np.zeros(1, np.int8)
    )
    images = image_cache(table, 10, tmp_path / "c", crop="none", progress=False, num_workers=1)
    assert (images[0] == (0, 255, 0)).all()
    with pytest.raises(ValueError, match="unknown crop 'square'"):
        image_cache(table, 10, tmp_path / "c", crop="square")
