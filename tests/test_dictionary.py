"""Face Dictionary: masks land on the right landmarks, follow the stated ellipse geometry, obey attributes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from facebias.faces.concepts import ATTRIBUTE_OF_CONCEPT, FACE_PARTS, LOCAL_CONCEPT_REGION, LOCAL_CONCEPTS
from facebias.faces.dictionary import (
    DEFAULT_CONFIDENCE,
    MIN_STD_IOD,
    FaceDictionary,
    chi2_radius_squared,
    dictionary_for_table,
    exact_masks_to_crop,
    face_dictionary,
    random_landmarks,
    score_against_exact,
)

SAMPLE_DIR = Path(__file__).parent / "data" / "celeba_sample"  # committed: ten real CelebA faces


def _read_celeba_sample() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    root = SAMPLE_DIR
    rows = (root / "list_landmarks_align_celeba.txt").read_text().splitlines()[2:]
    landmarks = np.array([[float(v) for v in r.split()[1:]] for r in rows if r.strip()]).reshape(-1, 5, 2)
    lines = (root / "list_attr_celeba.txt").read_text().splitlines()
    names = lines[1].split()
    values = np.array([[int(v) for v in r.split()[1:]] for r in lines[2:] if r.strip()])
    return landmarks, {name: (values[:, i] > 0).astype(np.int64) for i, name in enumerate(names)}


def _mask_pixel(point: np.ndarray, size: int) -> tuple[int, int]:
    """(row, col) of the mask pixel holding an aligned-image landmark: shift by the crop, scale."""
    col = math.floor((point[0] - 25 + 0.5) * size / 128)
    row = math.floor((point[1] - 57 + 0.5) * size / 128)
    return row, col


@pytest.fixture(scope="module")
def sample():
    landmarks, attrs = _read_celeba_sample()
    return landmarks, attrs, face_dictionary(landmarks, attrs, mask_size=56)


def test_parts_cover_their_landmarks_on_real_celeba_faces(sample):
    landmarks, _, dictionary = sample
    masks = dictionary.masks
    index = {c: i for i, c in enumerate(dictionary.concepts)}
    for face in range(len(landmarks)):
        for concept, points in (("eyes", (0, 1)), ("nose", (2,)), ("mouth", (3, 4))):
            for p in points:
                row, col = _mask_pixel(landmarks[face, p], 56)
                assert masks[face, index[concept], row, col], (face, concept, p)
        # the forehead is above the eyes and the chin below the mouth
        rows = torch.arange(56)[:, None].expand(56, 56)
        eye_row = _mask_pixel(landmarks[face, 0], 56)[0]
        mouth_row = _mask_pixel(landmarks[face, 3], 56)[0]
        assert rows[masks[face, index["forehead"]]].max() < eye_row
        assert rows[masks[face, index["chin"]]].min() > mouth_row


def test_attribute_concepts_are_empty_exactly_where_the_attribute_says_absent(sample):
    _, attrs, dictionary = sample
    masks = dictionary.masks
    assert dictionary.concepts == LOCAL_CONCEPTS
    for ci, concept in enumerate(dictionary.concepts):
        drawn = masks[:, ci].flatten(1).any(dim=1).numpy()
        if concept in ATTRIBUTE_OF_CONCEPT:
            attribute, value = ATTRIBUTE_OF_CONCEPT[concept]
            np.testing.assert_array_equal(drawn, attrs[attribute] == value, err_msg=concept)
        else:
            assert drawn.all(), concept
    # the sample has no eyeglasses at all and three men (000003, 000007, 000008)
    assert not masks[:, LOCAL_CONCEPTS.index("Eyeglasses")].any()
    np.testing.assert_array_equal(np.flatnonzero(dictionary.groups["Male"]), [2, 6, 7])


def test_covariance_of_a_diamond_and_ellipse_area_match_closed_forms():
    landmarks = random_landmarks(20, seed=3)
    size = 256
    dictionary = face_dictionary(landmarks, None, mask_size=size, concepts=("chin", "nose", "mouth"))
    # chin = the four vertices of (0.28 u, 0.24 v) half-axes around M + 0.5 v: covariance (h_a^2 u u' + h_b^2 v v')/2
    scale = size / 128
    points = (landmarks.astype(np.float64) - (24.5, 56.5)) * scale
    u = points[:, 1] - points[:, 0]
    v = (points[:, 3] + points[:, 4]) / 2 - (points[:, 0] + points[:, 1]) / 2
    expected = 0.5 * (0.28**2 * np.einsum("ni,nj->nij", u, u) + 0.24**2 * np.einsum("ni,nj->nij", v, v))
    expected += (MIN_STD_IOD * np.linalg.norm(u, axis=1))[:, None, None] ** 2 * np.eye(2)
    np.testing.assert_allclose(dictionary.covariances[:, 0, 0].numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(
        dictionary.means[:, 0, 0].numpy(), (points[:, 3] + points[:, 4]) / 2 + 0.5 * v, rtol=1e-5
    )
    # area in pixels == pi * sqrt(det S) * r^2 up to the pixelised boundary (nose and mouth lie
    # well inside the crop; the chin can be cut by its bottom edge)
    r2 = chi2_radius_squared(DEFAULT_CONFIDENCE)
    assert r2 == pytest.approx(2.0)
    areas = dictionary.masks[:, 1:].flatten(2).sum(-1).double()  # (n, 2)
    closed = math.pi * torch.linalg.det(dictionary.covariances[:, 1:, 0].double()).sqrt() * r2
    np.testing.assert_allclose(areas.numpy(), closed.numpy(), rtol=0.03)


def test_confidence_scales_area_by_the_chi_square_radius():
    landmarks = random_landmarks(5, seed=4)
    small = face_dictionary(landmarks, None, mask_size=256, concepts=("forehead",), confidence=0.5)
    large = face_dictionary(landmarks, None, mask_size=256, concepts=("forehead",), confidence=0.9)
    ratio = large.masks.sum().item() / small.masks.sum().item()
    assert ratio == pytest.approx(math.log(0.1) / math.log(0.5), rel=0.02)  # r^2 = -2 ln(1 - conf)


def test_a_mirror_symmetric_face_gives_mirror_symmetric_masks():
    # symmetric about aligned x = 88.5 (pixel index), the crop's centre line (cols 25..153)
    face = np.array([[[70, 110], [107, 110], [88.5, 135], [73, 152], [104, 152]]], dtype=np.float32)
    dictionary = face_dictionary(face, None, mask_size=64)
    masks = dictionary.masks[0]
    assert torch.equal(masks, masks.flip(-1))
    assert masks.any(dim=(1, 2)).all()


def test_without_attributes_only_the_face_parts_are_drawn_and_errors_name_the_fix():
    landmarks = random_landmarks(4)
    assert face_dictionary(landmarks).concepts == FACE_PARTS
    with pytest.raises(ValueError, match=r"\(n, 5, 2\)"):
        face_dictionary(landmarks[:, :4])
    with pytest.raises(KeyError, match="Eyeglasses"):
        face_dictionary(landmarks, {"Male": np.zeros(4, int)})
    with pytest.raises(ValueError, match="0/1"):
        face_dictionary(landmarks, {a: -np.ones(4, int) for a, _ in ATTRIBUTE_OF_CONCEPT.values()})
    with pytest.raises(ValueError, match="need attributes"):
        face_dictionary(landmarks, None, concepts=("Eyeglasses",))
    bad = landmarks.copy()
    bad[2, 1] = bad[2, 0]
    with pytest.raises(ValueError, match=r"rows \[2\]"):
        face_dictionary(bad)


def test_masks_for_a_batch_equal_the_full_masks():
    landmarks = random_landmarks(300, seed=1)
    rng = np.random.default_rng(0)
    attrs = {a: rng.integers(0, 2, 300) for a, _ in ATTRIBUTE_OF_CONCEPT.values()}
    dictionary = face_dictionary(landmarks, attrs)
    assert torch.equal(dictionary.masks_for(slice(100, 180)), dictionary.masks[100:180])
    assert dictionary.masks.shape == (300, len(LOCAL_CONCEPTS), 56, 56)


def test_exact_masks_are_cropped_and_resized_to_crop_coordinates():
    exact = torch.zeros(1, 1, 218, 178, dtype=torch.bool)
    exact[0, 0, 57 + 32 : 57 + 96, 25 + 32 : 25 + 96] = True  # the crop's central half
    crop = exact_masks_to_crop(exact, 64)
    expected = torch.zeros(64, 64, dtype=torch.bool)
    expected[16:48, 16:48] = True
    assert torch.equal(crop[0, 0], expected)
    assert torch.equal(exact_masks_to_crop(exact, 128)[0, 0], exact[0, 0, 57:185, 25:153])
    with pytest.raises(ValueError, match="218, 178"):
        exact_masks_to_crop(torch.zeros(1, 1, 128, 128, dtype=torch.bool), 64)


def _disc_dictionary(centres: list[list[tuple[float, float]]], radii: list[list[float]], present: list[list[bool]],
                     concepts: tuple[str, ...], size: int = 128) -> FaceDictionary:
    """One disc per (face, concept) in mask pixels: an isotropic Gaussian whose r^2-ellipse has that radius."""
    r2 = chi2_radius_squared(DEFAULT_CONFIDENCE)
    means = torch.tensor(centres, dtype=torch.float32)[:, :, None, :]  # (n, C, K=1, 2)
    variances = torch.tensor(radii, dtype=torch.float32) ** 2 / r2
    covariances = variances[:, :, None, None, None] * torch.eye(2)  # (n, C, 1, 2, 2)
    return FaceDictionary(concepts=concepts, regions=tuple(LOCAL_CONCEPT_REGION[c] for c in concepts), mask_size=size,
                          confidence=DEFAULT_CONFIDENCE, means=means, covariances=covariances,
                          present=torch.tensor(present))


def _exact_disc(centre: tuple[float, float], radius: float) -> torch.Tensor:
    """A disc in the aligned 218x178 frame, given in 128-px crop coordinates (pixel centres at j + 0.5)."""
    rows = torch.arange(218, dtype=torch.float64)[:, None] + 0.5 - 57
    cols = torch.arange(178, dtype=torch.float64)[None, :] + 0.5 - 25
    return (cols - centre[0]) ** 2 + (rows - centre[1]) ** 2 <= radius**2


def test_score_against_exact_gives_the_closed_form_iou_of_discs_per_image_mean():
    """Concentric discs of radii r < R: IoU = r^2 / R^2. Two equal discs of radius R whose centres are R
    apart: intersection R^2 (2 pi / 3 - sqrt(3) / 2), union 2 pi R^2 minus that, IoU 0.2430."""
    c = (64.0, 64.0)
    concepts = ("eyes", "nose", "Eyeglasses", "Mustache")
    # eyes: drawn r = 20 in a true R = 40 (face 0), r = 30 in R = 30 (face 1)
    # nose: drawn R = 24, true R = 24 moved right by 24 (both faces)
    # Eyeglasses: face 0 wears them (drawn = true, r = 20); face 1 does not (both empty: skipped)
    # Mustache: absent everywhere (both empty on every face: undefined)
    dictionary = _disc_dictionary(centres=[[c, c, c, c]] * 2, radii=[[20, 24, 20, 10], [30, 24, 20, 10]],
                                  present=[[True, True, True, False], [True, True, False, False]], concepts=concepts)
    exact = torch.zeros(2, len(concepts), 218, 178, dtype=torch.bool)
    exact[0, 0], exact[1, 0] = _exact_disc(c, 40), _exact_disc(c, 30)
    exact[:, 1] = _exact_disc((c[0] + 24, c[1]), 24)
    exact[0, 2] = _exact_disc(c, 20)
    scores = score_against_exact(dictionary, exact, exact_concepts=concepts)
    # pixelised (measured): eyes 0.6258, nose 0.2407, Eyeglasses 1.0
    # the mean of the per-face IoUs (0.25 and 1), not the pooled ratio (400 + 900) / (1600 + 900) = 0.52
    assert scores["eyes"] == pytest.approx((20**2 / 40**2 + 1.0) / 2, rel=0.01)
    lens = 2 * math.pi / 3 - math.sqrt(3) / 2
    assert scores["nose"] == pytest.approx(lens / (2 * math.pi - lens), rel=0.02)
    assert scores["Eyeglasses"] == pytest.approx(1.0)  # not 0.5: the face without glasses is skipped
    assert math.isnan(scores["Mustache"])


def test_synthfaces_exact_masks_agree_with_the_landmark_ellipses():
    from facebias.data import synthfaces

    faces = synthfaces.render(synthfaces.sample_latents(16, seed=0))
    attrs = {
        name: faces.attrs[:, i].numpy().astype(np.int64) for i, name in enumerate(synthfaces.ATTRIBUTE_NAMES)
    }
    dictionary = face_dictionary(faces.landmarks.numpy(), attrs)
    scores = score_against_exact(dictionary, faces.masks)
    # five-landmark ellipses only approximate the drawn parts (200 faces: eyes 0.74, nose 0.61,
    # mouth 0.53, forehead 0.59), but they must overlap clearly and beat a mask moved off the part
    for part in ("eyes", "nose", "mouth", "forehead"):
        assert scores[part] > 0.4, scores
    moved = score_against_exact(dictionary, faces.masks.roll(shifts=12, dims=-2))
    assert moved["eyes"] < 0.1 and moved["mouth"] < 0.1


def test_a_face_table_becomes_a_dictionary_with_its_groups():
    from facebias.data.table import FaceTable

    names = tuple(sorted({a for a, _ in ATTRIBUTE_OF_CONCEPT.values()} | {"Male", "Young"}))
    attrs = np.zeros((5, len(names)), dtype=np.uint8)
    attrs[:, names.index("Eyeglasses")] = [1, 0, 1, 0, 0]
    attrs[:, names.index("Male")] = [1, 1, 0, 0, 1]
    table = FaceTable(
        source="synthfaces",
        image_dir=Path("."),
        filenames=tuple(f"{i:06d}.jpg" for i in range(5)),
        attr_names=names,
        attrs=attrs,
        split=np.zeros(5, dtype=np.int8),
        landmarks=random_landmarks(5),
    )
    dictionary = dictionary_for_table(table, indices=[0, 1, 2], grayscale=np.array([0, 1, 1]))
    assert len(dictionary) == 3
    np.testing.assert_array_equal(dictionary.groups["Male"], [1, 1, 0])
    np.testing.assert_array_equal(dictionary.groups["grayscale"], [0, 1, 1])
    glasses = dictionary.masks[:, LOCAL_CONCEPTS.index("Eyeglasses")].flatten(1).any(1)
    assert glasses.tolist() == [True, False, True]
    no_landmarks = FaceTable("folder", Path("x"), table.filenames, names, attrs, table.split)
    with pytest.raises(ValueError, match="no landmarks"):
        dictionary_for_table(no_landmarks)
