"""SynthFaces: deterministic CelebA-layout files, labels that are the half-space rules, exact masks."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facebias.data.synthfaces import (
    ATTRIBUTE_NAMES,
    build_model,
    generate,
    load_masks,
    render,
    sample_latents,
)
from facebias.faces.concepts import ATTRIBUTE_OF_CONCEPT, FACE_PARTS, LOCAL_CONCEPTS
from facebias.faces.geometry import ALIGNED_HEIGHT, ALIGNED_WIDTH

N = 40


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under root, by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("sf"), n_faces=N, seed=3, progress=False, workers=0)


def rule_attributes(root: Path) -> np.ndarray:
    """Labels recomputed from latents.npy and the half-spaces in synthfaces.json, in float64 NumPy."""
    meta = json.loads((root / "synthfaces.json").read_text())
    z = np.load(root / "latents.npy").astype(np.float64)
    hs = meta["latent_model"]["half_spaces"]
    margin = {k: z @ np.array(v["w"]) + v["b"] for k, v in hs.items()}
    cols = []
    for name in meta["attribute_names"]:
        spec = meta["latent_model"]["attributes"][name]
        on = np.ones(len(z), dtype=bool)
        for term, sign in spec["terms"]:
            on &= margin[term] > 0 if sign > 0 else margin[term] <= 0
        cols.append(~on if spec["negate"] else on)
    return np.stack(cols, axis=1)


def read_attr_file(root: Path) -> tuple[list[str], np.ndarray]:
    lines = (root / "list_attr_celeba.txt").read_text().split("\n")
    names = lines[1].split()
    vals = np.array([[int(v) for v in line.split()[1:]] for line in lines[2:] if line])
    return names, vals


# ---------------------------------------------------------------- files and cache


def test_layout_is_celeba(small_set: Path) -> None:
    root = small_set
    jpgs = sorted(p.name for p in (root / "img_align_celeba").iterdir())
    assert jpgs == [f"{i:06d}.jpg" for i in range(1, N + 1)]
    from PIL import Image

    with Image.open(root / "img_align_celeba" / "000001.jpg") as im:
        assert im.format == "JPEG" and im.size == (ALIGNED_WIDTH, ALIGNED_HEIGHT) and im.mode == "RGB"

    lines = (root / "list_attr_celeba.txt").read_text().split("\n")
    assert lines[0] == str(N) and lines[-1] == ""
    assert lines[1] == " ".join(ATTRIBUTE_NAMES) + " "  # CelebA's header ends with a space
    for i, line in enumerate(lines[2:-1]):
        assert line.startswith(f"{i + 1:06d}.jpg")
        assert len(line) == 10 + 3 * len(ATTRIBUTE_NAMES)  # "000001.jpg -1  1 ..." fixed width
        assert set(line.split()[1:]) <= {"1", "-1"}

    lm = (root / "list_landmarks_align_celeba.txt").read_text().split("\n")
    assert lm[0] == str(N)
    assert lm[1].split() == [f"{p}_{c}" for p in ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")
                             for c in ("x", "y")]  # fmt: skip
    rows = [r.split() for r in lm[2:] if r]
    assert len(rows) == N and all(len(r) == 11 for r in rows)
    assert all(v.isdigit() for r in rows for v in r[1:])

    part = [r.split() for r in (root / "list_eval_partition.txt").read_text().splitlines()]
    splits = [int(s) for _, s in part]
    assert splits == [0] * 32 + [1] * 4 + [2] * 4  # 80/10/10 of 40, contiguous like CelebA
    ident = [r.split() for r in (root / "identity_CelebA.txt").read_text().splitlines()]
    assert ident[0] == ["000001.jpg", "1"] and ident[-1] == [f"{N:06d}.jpg", str(N)]
    assert np.load(root / "latents.npy").shape == (N, 32)


def test_landmarks_near_celeba_canonical_positions(small_set: Path) -> None:
    rows = [r.split() for r in (small_set / "list_landmarks_align_celeba.txt").read_text().split("\n")[2:] if r]
    lm = np.array([[int(v) for v in r[1:]] for r in rows]).reshape(-1, 5, 2)
    canonical = np.array([[69, 111], [107, 111], [88, 135], [72, 152], [105, 152]])
    assert np.abs(lm.mean(axis=0) - canonical).max() < 4.0
    assert np.abs(lm - canonical).max() < 14


def test_labels_are_the_half_space_rules(small_set: Path) -> None:
    names, vals = read_attr_file(small_set)
    assert names == list(ATTRIBUTE_NAMES)
    assert np.array_equal(vals > 0, rule_attributes(small_set))


def test_same_seed_byte_identical_and_worker_count_irrelevant(small_set: Path, tmp_path: Path) -> None:
    again = generate(tmp_path, n_faces=N, seed=3, progress=False, workers=2)
    assert again.name == small_set.name  # same config, same cache key
    assert tree_digest(again) == tree_digest(small_set)


def test_different_seed_gives_different_files(small_set: Path, tmp_path: Path) -> None:
    other = generate(tmp_path, n_faces=N, seed=4, progress=False, workers=0)
    assert other.name != small_set.name
    a, b = tree_digest(small_set), tree_digest(other)
    assert a["latents.npy"] != b["latents.npy"]
    assert sum(a[k] != b[k] for k in a if k.endswith(".jpg")) == N


def test_incomplete_cache_is_rebuilt(tmp_path: Path) -> None:
    root = generate(tmp_path, n_faces=8, seed=1, progress=False, workers=0)
    digest = tree_digest(root)
    (root / "img_align_celeba" / "000005.jpg").unlink()
    (root / "list_attr_celeba.txt").write_text("garbage")
    (root / ".complete").unlink()  # as if a copy was interrupted
    again = generate(tmp_path, n_faces=8, seed=1, progress=False, workers=0)
    assert again == root and tree_digest(again) == digest
    (root / "img_align_celeba" / "000002.jpg").unlink()  # marker present but an image missing
    assert tree_digest(generate(tmp_path, n_faces=8, seed=1, progress=False, workers=0)) == digest
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_concurrent_generate_yields_one_valid_set(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom facebias.data.synthfaces import generate\n"
        "if __name__ == '__main__':\n"
        "    print(generate(sys.argv[1], n_faces=30, seed=5, progress=False, workers=0))\n"
    )
    script = tmp_path / "gen.py"
    script.write_text(code)
    data = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, str(script), str(data)], stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0] == outs[1]
    sets = [p for p in data.iterdir() if p.is_dir()]
    assert len(sets) == 1 and str(sets[0]) == outs[0]
    reference = generate(tmp_path / "ref", n_faces=30, seed=5, progress=False, workers=0)
    assert tree_digest(sets[0]) == tree_digest(reference)


def test_bad_options_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown option.*'colour'"):
        generate(tmp_path, n_faces=4, colour=True)
    with pytest.raises(ValueError, match=r"rates\['Male'\]"):
        generate(tmp_path, n_faces=4, rates={"Male": 1.5})
    with pytest.raises(ValueError, match="'Blurry'"):
        generate(tmp_path, n_faces=4, rates={"Blurry": 0.2})
    with pytest.raises(ValueError, match="n_faces"):
        generate(tmp_path, n_faces=0)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- latent model


def test_half_space_geometry_and_base_rates() -> None:
    model = build_model()
    for w in model.half_space_w.values():
        assert math.isclose(sum(x * x for x in w), 1.0, rel_tol=1e-12)
    # b = Phi^-1(rate): Male at 0.42 -> b = -0.2019 (table value)
    assert math.isclose(model.half_space_b["male"], -0.201893, abs_tol=1e-5)
    z = sample_latents(40000, 11)
    a = model.attributes(z).numpy()
    col = {n: a[:, i] for i, n in enumerate(model.attribute_names)}
    se = 0.5 / math.sqrt(len(z))
    assert abs(col["Male"].mean() - 0.42) < 4 * se
    assert abs(col["Eyeglasses"].mean() - 0.30) < 4 * se
    # eyeglasses independent of gender by default: equal rates among men and women
    male = col["Male"]
    assert abs(col["Eyeglasses"][male].mean() - col["Eyeglasses"][~male].mean()) < 0.02
    # gated attributes are drawn, and labelled, only for the gate
    assert not (col["Mustache"] & ~male).any() and not ((1 - col["No_Beard"]).astype(bool) & ~male).any()
    assert not (col["Wearing_Lipstick"] & male).any() and not (col["Wearing_Earrings"] & male).any()
    hair = np.stack([col[k] for k in ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")], 1)
    assert (hair.sum(1) == 1).all()  # exactly one hair colour each
    # the glasses-gender angle is an option: cos = 0.5 gives the bivariate-normal correlation
    skew = build_model(eyeglasses_male_cos=0.5)
    cos = sum(x * y for x, y in zip(skew.half_space_w["eyeglasses"], skew.half_space_w["male"], strict=True))
    assert math.isclose(cos, 0.5, rel_tol=1e-12)


# ---------------------------------------------------------------- rendering and masks


@pytest.fixture(scope="module")
def rendered():
    z = sample_latents(48, 7)
    return z, render(z)


def test_render_output_shapes_and_determinism(rendered) -> None:
    z, out = rendered
    assert out.images.shape == (48, ALIGNED_HEIGHT, ALIGNED_WIDTH, 3) and out.images.dtype == torch.uint8
    assert out.landmarks.shape == (48, 5, 2) and out.landmarks.dtype == torch.float32
    assert out.attrs.shape == (48, len(ATTRIBUTE_NAMES)) and out.attrs.dtype == torch.uint8
    assert out.masks.shape == (48, len(LOCAL_CONCEPTS), ALIGNED_HEIGHT, ALIGNED_WIDTH)
    assert out.masks.dtype == torch.bool
    assert torch.equal(render(z[:5]).images, out.images[:5])


def test_render_is_batch_invariant(rendered) -> None:
    """A face renders bit-identically alone, in another batch, or at another position."""
    z, out = rendered
    for i in (0, 17, 47):
        alone = render(z[i : i + 1])
        assert torch.equal(alone.images[0], out.images[i])
        assert torch.equal(alone.masks[0], out.masks[i])
    shuffled = render(z.flip(0)[:20])
    assert torch.equal(shuffled.images, out.images.flip(0)[:20])
    assert torch.equal(shuffled.masks, out.masks.flip(0)[:20])


def test_masks_present_exactly_where_attribute_is_on(rendered) -> None:
    _, out = rendered
    area = out.masks.flatten(2).sum(-1)  # (B, C)
    for ci, concept in enumerate(LOCAL_CONCEPTS):
        if concept in FACE_PARTS:
            assert (area[:, ci] > 20).all(), concept
        else:
            attr, value = ATTRIBUTE_OF_CONCEPT[concept]
            present = out.attrs[:, ATTRIBUTE_NAMES.index(attr)] == value
            assert torch.equal(area[:, ci] > 0, present), concept
            assert 0 < int(present.sum()) < len(present) or concept in ("Wearing_Hat", "Mustache"), concept


def test_masks_lie_where_the_parts_are(rendered) -> None:
    _, out = rendered
    lm = out.landmarks.round().long()
    c = {name: i for i, name in enumerate(LOCAL_CONCEPTS)}
    glasses = out.attrs[:, ATTRIBUTE_NAMES.index("Eyeglasses")].bool()
    assert glasses.any()
    for b in range(len(lm)):
        (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = lm[b].tolist()
        m = out.masks[b]
        assert m[c["eyes"], ly, lx] and m[c["eyes"], ry, rx]
        assert m[c["nose"], ny, nx]
        mouth = m[c["mouth"]].float()[None, None]
        near_mouth = torch.nn.functional.max_pool2d(mouth, 5, stride=1, padding=2)[0, 0].bool()  # 2-px margin
        assert near_mouth[mly, mlx] and near_mouth[mry, mrx]  # the corners are the lips' ends
        assert abs(torch.nonzero(m[c["mouth"]])[:, 1].float().mean() - (mlx + mrx) / 2) < 2.0
        assert m[c["Eyeglasses"], ly, lx] == glasses[b] and m[c["Eyeglasses"], ry, rx] == glasses[b]
        rows_of = {k: torch.nonzero(m[c[k]].any(1)).flatten() for k in ("brows", "forehead", "chin", "hair")}
        assert rows_of["brows"].max() < min(ly, ry) and rows_of["forehead"].max() < min(ly, ry)
        assert rows_of["chin"].min() > max(mly, mry)
        assert rows_of["hair"].min() < min(ly, ry) - 30


def test_eyeglasses_change_only_pixels_in_their_mask(rendered) -> None:
    """Reflect z across the Eyeglasses half-space: the glasses come or go and nothing else moves."""
    z, out = rendered
    model = build_model()
    w = torch.tensor(model.half_space_w["eyeglasses"], dtype=torch.float64)
    margin = z.double() @ w + model.half_space_b["eyeglasses"]
    flipped = (z.double() - 2 * margin[:, None] * w).float()
    out2 = render(flipped)
    ig = ATTRIBUTE_NAMES.index("Eyeglasses")
    assert torch.equal(out2.attrs[:, ig], 1 - out.attrs[:, ig])
    keep = [i for i in range(len(ATTRIBUTE_NAMES)) if i != ig]
    assert torch.equal(out2.attrs[:, keep], out.attrs[:, keep])
    ci = LOCAL_CONCEPTS.index("Eyeglasses")
    mask = (out.masks[:, ci] | out2.masks[:, ci]).float()[:, None]
    near = torch.nn.functional.max_pool2d(mask, 7, stride=1, padding=3)[:, 0].bool()  # 3-pixel margin
    changed = (out.images.int() - out2.images.int()).abs().amax(-1) > 2
    assert changed.any()
    assert not (changed & ~near).any()
    # and the frames are unmistakable: darker than the skin they cover by a wide margin
    on = out.attrs[:, ig].bool()
    inside = out.masks[on, ci]
    diff = out2.images[on].float().mean(-1)[inside] - out.images[on].float().mean(-1)[inside]
    assert diff.mean() > 25


def test_load_masks_rerenders_exactly(small_set: Path) -> None:
    z = torch.from_numpy(np.load(small_set / "latents.npy"))
    idx = [0, 5, 39, 5]
    masks = load_masks(small_set, idx)
    assert torch.equal(masks, render(z[idx]).masks)
    small = load_masks(small_set, [1, 2], size=64)
    assert small.shape == (2, len(LOCAL_CONCEPTS), 64, 64) and small.dtype == torch.bool
    with pytest.raises(IndexError, match="out of range"):
        load_masks(small_set, [N])


def test_stored_jpegs_are_the_rendered_pictures(small_set: Path) -> None:
    from PIL import Image

    z = torch.from_numpy(np.load(small_set / "latents.npy"))
    out = render(z[:4], with_masks=False)
    for i in range(4):
        with Image.open(small_set / "img_align_celeba" / f"{i + 1:06d}.jpg") as im:
            arr = torch.from_numpy(np.array(im.convert("RGB")))
        assert (arr.float() - out.images[i].float()).abs().mean() < 3.0  # JPEG q90 error only


def test_render_rejects_bad_latents() -> None:
    with pytest.raises(ValueError, match=r"\(B, 32\)"):
        render(torch.zeros(3, 31))
    with pytest.raises(ValueError, match="NaN"):
        render(torch.full((1, 32), float("nan")))
