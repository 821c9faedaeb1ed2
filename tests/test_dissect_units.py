"""Unit-concept pairing: known detectors are found, thresholds are exact, IoU sums match a slow loop."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facebias.dissect.layers import ActivationRecorder, get_layer, layer_output_shapes, list_layers
from facebias.dissect.nonlocal_units import GroupActivationStats, biased_units
from facebias.dissect.units import DictionaryBatches, dissect
from facebias.faces.concepts import ATTRIBUTE_OF_CONCEPT, LOCAL_CONCEPTS
from facebias.faces.dictionary import face_dictionary, random_landmarks

EYEGLASSES = LOCAL_CONCEPTS.index("Eyeglasses")
MOUTH = LOCAL_CONCEPTS.index("mouth")


class Oracle(nn.Module):
    """Images are (B, 3, S, S): [Eyeglasses mask, mouth mask, noise] + tiny noise to break ties.

    ``features`` passes them through (or average-pools them), so unit 0 fires exactly on the
    eyeglasses band, unit 1 on the mouth and unit 2 on nothing in particular.
    """

    def __init__(self, pool: int = 1):
        super().__init__()
        self.features = nn.AvgPool2d(pool) if pool > 1 else nn.Identity()
        self.head = nn.Linear(3, 1)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def faces():
    n = 400
    rng = np.random.default_rng(0)
    attrs = {a: rng.integers(0, 2, n) for a, _ in ATTRIBUTE_OF_CONCEPT.values()}
    attrs["Male"] = rng.integers(0, 2, n)
    dictionary = face_dictionary(random_landmarks(n, seed=5), attrs, mask_size=32)
    masks = dictionary.masks
    noise = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    images = torch.stack([masks[:, EYEGLASSES], masks[:, MOUTH], torch.zeros_like(masks[:, 0])], 1).float()
    images = images + 1e-3 * noise[:, :2].sum(1, keepdim=True) * torch.tensor([1.0, 1.0, 0.0])[:, None, None]
    images[:, 2] = noise[:, 2]
    return dictionary, images


def _area_fraction(dictionary, concept_index: int) -> float:
    return dictionary.masks[:, concept_index].float().mean().item()


def test_a_unit_that_fires_on_the_eyeglasses_band_is_an_eyeglasses_detector(faces):
    dictionary, images = faces
    quantile = _area_fraction(dictionary, EYEGLASSES)  # the unit's top fraction = the band's area
    result = dissect(Oracle(), ["features"], DictionaryBatches(images, dictionary, 64), quantile=quantile)
    layer = result.layers["features"]
    assert layer.concepts[int(layer.best_concept[0])] == "Eyeglasses"
    assert layer.best_iou[0] > 0.99
    assert layer.detector[0]
    assert not layer.detector[2]  # pure noise
    assert layer.rows()[0]["region"] == "eye"


def test_a_unit_that_fires_on_the_mouth_is_a_mouth_detector_even_at_a_coarser_layer(faces):
    dictionary, images = faces
    quantile = _area_fraction(dictionary, MOUTH)
    result = dissect(
        Oracle(pool=2), ["features"], DictionaryBatches(images, dictionary, 100), quantile=quantile
    )
    layer = result.layers["features"]
    assert layer.map_size == (16, 16)
    assert layer.concepts[int(layer.best_concept[1])] == "mouth"
    assert layer.best_iou[1] > 0.75  # a ~3 px tall mouth upsampled from half resolution loses its tips
    assert not layer.detector[2]


def test_noise_units_are_no_detectors_at_the_default_quantile(faces):
    dictionary, images = faces
    result = dissect(Oracle(), ["features"], DictionaryBatches(images, dictionary, 128))
    assert result.layers["features"].best_iou[2] < 0.04
    assert not result.layers["features"].detector[2]


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(6, 5, 3, stride=2, padding=1)
        self.head = nn.Linear(5, 1)

    def forward(self, x):
        a = torch.relu(self.conv1(x))
        b = self.conv2(a)
        return self.head(b.mean(dim=(2, 3)))


def _random_batches(sizes, concepts=3, mask_size=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(b, 3, 16, 16, generator=g),
            torch.rand(b, concepts, mask_size, mask_size, generator=g) < 0.3,
        )
        for b in sizes
    ]


def _all_activations(model, name, batches):
    recorder = ActivationRecorder(model, [name], stop_early=False)
    with torch.no_grad(), recorder.attached():
        return torch.cat([recorder(images)[name] for images, _ in batches])


@pytest.mark.parametrize("quantile", [0.005, 0.05, 0.3])
def test_thresholds_are_the_exact_kth_largest_activation(quantile):
    model, batches = SmallNet(), _random_batches([7, 13, 1, 9])
    result = dissect(
        model, ["conv1", "conv2"], batches, concepts=("a", "b", "c"), quantile=quantile, n_images=100
    )
    for name in ("conv1", "conv2"):
        acts = _all_activations(model, name, batches)  # (N, U, h, w)
        values = acts.transpose(0, 1).flatten(1)  # (U, N*h*w)
        total = values.shape[1]
        k = math.ceil(round(quantile * total, 6))
        expected = values.sort(dim=1, descending=True).values[:, k - 1]
        assert torch.equal(result.layers[name].thresholds, expected)
        # within one rank of torch.quantile's 'lower' order statistic, at or above it
        lower = torch.quantile(values, 1 - quantile, dim=1, interpolation="lower")
        ascending = values.sort(dim=1).values
        index = math.floor((1 - quantile) * (total - 1))
        assert torch.equal(lower, ascending[:, index])
        assert (expected >= lower).all() and (expected <= ascending[:, min(index + 1, total - 1)]).all()


def test_iou_tallies_equal_a_slow_per_unit_per_concept_per_image_loop():
    model, batches = SmallNet(), _random_batches([5, 4, 3], mask_size=12)
    result = dissect(model, ["conv2"], batches, concepts=("a", "b", "c"), quantile=0.1)
    layer = result.layers["conv2"]
    acts = _all_activations(model, "conv2", batches)
    masks = torch.cat([m for _, m in batches])
    units, concepts = acts.shape[1], masks.shape[1]
    inter = torch.zeros(units, concepts)
    union = torch.zeros(units, concepts)
    for u in range(units):
        for c in range(concepts):
            for i in range(acts.shape[0]):
                up = F.interpolate(
                    acts[i, u][None, None], size=(12, 12), mode="bilinear", align_corners=False
                )[0, 0]
                on = up > layer.thresholds[u]
                inter[u, c] += (on & masks[i, c]).sum()
                union[u, c] += (on | masks[i, c]).sum()
    assert torch.equal(layer.intersection.float(), inter)
    unions = layer.unit_area[:, None] + layer.concept_area[None, :] - layer.intersection
    assert torch.equal(unions.float(), union)
    torch.testing.assert_close(layer.iou.float(), inter / union)
    assert (layer.intersection.sum() > 0).item()  # the case is not trivially empty


def test_cached_and_re_iterated_second_pass_agree_and_one_shot_data_is_handled():
    model, batches = SmallNet(), _random_batches([6, 6, 6])
    cached = dissect(model, ["conv1", "conv2"], batches, concepts=("a", "b", "c"), quantile=0.05)
    again = dissect(
        model, ["conv1", "conv2"], batches, concepts=("a", "b", "c"), quantile=0.05, cache_bytes=0
    )
    for name in ("conv1", "conv2"):
        assert torch.equal(cached.layers[name].intersection, again.layers[name].intersection)
        assert torch.equal(cached.layers[name].unit_area, again.layers[name].unit_area)
    one_shot = dissect(model, ["conv2"], iter(batches), concepts=("a", "b", "c"), quantile=0.05, n_images=18)
    assert torch.equal(one_shot.layers["conv2"].intersection, cached.layers["conv2"].intersection)
    with pytest.raises(ValueError, match="one-shot"):
        dissect(model, ["conv2"], iter(batches), concepts=("a", "b", "c"), n_images=18, cache_bytes=0)
    with pytest.raises(ValueError, match="n_images"):
        dissect(model, ["conv2"], iter(batches), concepts=("a", "b", "c"))
    with pytest.raises(ValueError, match="more than the 10 announced"):
        dissect(model, ["conv2"], batches, concepts=("a", "b", "c"), n_images=10)


def test_bad_inputs_fail_with_messages_that_name_the_fix():
    model, batches = SmallNet(), _random_batches([4])
    with pytest.raises(ValueError, match="3 channels for 4 concepts"):
        dissect(model, ["conv2"], batches, concepts=("a", "b", "c", "d"))
    with pytest.raises(KeyError, match="did you mean"):
        dissect(model, ["conv3"], batches, concepts=("a", "b", "c"))
    with pytest.raises(ValueError, match="feature map"):
        dissect(model, ["head"], batches, concepts=("a", "b", "c"))
    with pytest.raises(ValueError, match="quantile"):
        dissect(model, ["conv2"], batches, concepts=("a", "b", "c"), quantile=0.0)
    with pytest.raises(ValueError, match=r"\(images, masks\)"):
        dissect(model, ["conv2"], [batches[0][0]], concepts=("a", "b", "c"))
    model.train()
    dissect(model, ["conv2"], batches, concepts=("a", "b", "c"))
    assert model.training  # restored after eval-mode dissection


def test_layers_are_listed_with_shapes_and_hooks_capture_several_layers_in_one_pass():
    model = SmallNet()
    assert list_layers(model) == ["conv1", "conv2", "head"]
    probe = torch.zeros(2, 3, 16, 16)
    assert layer_output_shapes(model, probe) == {"conv1": (2, 6, 8, 8), "conv2": (2, 5, 4, 4), "head": (2, 1)}
    assert list_layers(model, probe)[1] == "conv2 (2, 5, 4, 4)"
    assert get_layer(model, "conv2") is model.conv2
    calls = []
    model.head.register_forward_hook(lambda *_: calls.append(1))
    recorder = ActivationRecorder(model, ["conv2", "conv1"])
    with torch.no_grad(), recorder.attached():
        outputs = recorder(probe)
    assert set(outputs) == {"conv1", "conv2"} and not calls  # stopped once both were captured
    assert not model.conv1._forward_hooks  # hooks removed


def test_group_statistics_give_cohens_d_and_flag_units_that_separate_groups():
    g = torch.Generator().manual_seed(0)
    responses = torch.randn(200, 3, generator=g, dtype=torch.float64)
    groups = (torch.arange(200) % 2)[:, None]
    responses[:, 0] += 2.0 * groups[:, 0]  # unit 0 answers group 1: d ~ 2
    stats = GroupActivationStats.empty(("Male",), 3)
    for start in range(0, 200, 30):
        stats.update(responses[start : start + 30], groups[start : start + 30])
    one, zero = responses[groups[:, 0] == 1].numpy(), responses[groups[:, 0] == 0].numpy()
    pooled = np.sqrt(((len(one) - 1) * one.var(0, ddof=1) + (len(zero) - 1) * zero.var(0, ddof=1)) / 198)
    expected = (one.mean(0) - zero.mean(0)) / pooled
    np.testing.assert_allclose(stats.cohens_d()[0].numpy(), expected, rtol=1e-9)
    rows = biased_units({"layer": stats})
    assert [r["biased"] for r in rows] == [True, False, False]


def test_dissect_reports_units_biased_for_a_group_and_writes_csv_tables(faces, tmp_path):
    dictionary, images = faces
    male = torch.as_tensor(dictionary.groups["Male"]).float()
    shifted = images.clone()
    shifted[:, 2] += male[:, None, None]  # the noise unit now answers Male
    result = dissect(Oracle(), ["features"], DictionaryBatches(shifted, dictionary, 64))
    rows = {(r["unit"], r["group"]): r for r in result.biased_units()}
    assert rows[(2, "Male")]["biased"] and rows[(2, "Male")]["cohens_d"] > 0.8
    assert not rows[(0, "Male")]["biased"]
    paths = result.write_csv(tmp_path)
    with paths["units"].open() as handle:
        units = list(csv.DictReader(handle))
    assert [r["unit"] for r in units] == ["0", "1", "2"]
    assert set(units[0]) == {"layer", "unit", "concept", "region", "iou", "detector", "level", "sibling",
                             "sibling_iou", "threshold"}
    counts = result.count_rows()
    per_region = {r["name"]: r["detectors"] for r in counts if r["kind"] == "region"}
    per_concept = {r["name"]: r["detectors"] for r in counts if r["kind"] == "concept"}
    per_level = {r["name"]: r["detectors"] for r in counts if r["kind"] == "level"}
    assert (
        sum(per_region.values()) == sum(per_concept.values()) == sum(per_level.values())
        == int(result.layers["features"].detector.sum())
    )
    assert paths["nonlocal_units"].exists()


class Passthrough(nn.Module):
    """features = the images themselves: unit i's map is image channel i."""

    def __init__(self):
        super().__init__()
        self.features = nn.Identity()

    def forward(self, x):
        return self.features(x).mean(dim=(2, 3))


def test_concept_level_and_region_level_detectors_are_told_apart():
    """Planted (HiND): a unit firing exactly on the left eye is a concept-level detector (its region's other
    concept, the right eye, scores 0); one firing on the union of the eye region's concepts (both eyes) is
    region-level (IoU ~0.5 with each); the mouth, alone in its region, is concept-level; noise is no detector."""
    from facebias.dissect.units import level_rule
    from facebias.faces.dictionary import random_landmarks_68

    n, size = 200, 32
    concepts = ("left_eye", "right_eye", "nose", "mouth")
    dictionary = face_dictionary(random_landmarks_68(n, seed=4), None, mask_size=size, concepts=concepts)
    masks = dictionary.masks
    on = [masks[:, 0], masks[:, 0] | masks[:, 1], masks[:, 3]]
    positive = 1.0 + 1e-3 * torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))
    images = torch.cat([torch.stack(on, 1).float() * positive,  # exactly 0 off the mask: T_u = 0, M_u = the mask
                        torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(2))], 1)
    batches = DictionaryBatches(images, dictionary, 64)
    result = dissect(Passthrough(), ["features"], batches, quantile=0.2)  # 0.2 > every mask's area share
    layer = result.layers["features"]
    rows = layer.rows()
    assert [r["concept"] for r in rows[:3]] == ["left_eye", rows[1]["concept"], "mouth"]
    assert rows[0]["iou"] == pytest.approx(1.0) and rows[0]["sibling"] == "right_eye" and rows[0]["sibling_iou"] == 0
    assert rows[0]["level"] == "concept"
    assert rows[1]["region"] == "eye" and rows[1]["level"] == "region"
    assert {rows[1]["concept"], rows[1]["sibling"]} == {"left_eye", "right_eye"}
    assert rows[1]["iou"] == pytest.approx(0.5, abs=0.05) and rows[1]["sibling_iou"] == pytest.approx(0.5, abs=0.05)
    assert rows[2]["level"] == "concept" and rows[2]["sibling"] == "" and rows[2]["sibling_iou"] == 0
    assert not rows[3]["detector"] and rows[3]["level"] == ""
    assert layer.detectors_per_level() == {"concept": 2, "region": 1}
    assert layer.region_level_per_region() == {"eye": 1}
    levels = {r["name"]: r["detectors"] for r in result.count_rows() if r["kind"] == "level"}
    assert levels == {"concept": 2, "region": 1}
    assert "1.5 x" in level_rule(0.5)
    # the margin is an option: with 0, any lead over the region's other concepts makes a concept-level detector
    loose = dissect(Passthrough(), ["features"], batches, quantile=0.2, region_margin=0.0).layers["features"]
    lead = rows[1]["iou"] > rows[1]["sibling_iou"]
    assert loose.detectors_per_level() == {"concept": 2 + lead, "region": 1 - lead}
    with pytest.raises(ValueError, match="region_margin"):
        dissect(Passthrough(), ["features"], batches, quantile=0.2, region_margin=-0.1)


# ------------------------------------------------------------------------------------ the grayscale probe

class _ColourAndLuma(torch.nn.Module):
    """Two 1x1 units on the standard model input: unit 0 = R - G (a colour-opponent unit: 0 on any gray
    pixel), unit 1 = BT.601 luminance (what the grayscale conversion keeps), each up to a constant."""

    def __init__(self):
        super().__init__()
        from facebias.data.transforms import IMAGENET_STD, LUMA

        self.conv = torch.nn.Conv2d(3, 2, 1, bias=False)
        std = torch.tensor(IMAGENET_STD)
        weight = torch.stack([torch.tensor([1.0, -1.0, 0.0]) * std, torch.tensor(LUMA) * std])
        self.conv.weight.data = weight.view(2, 3, 1, 1)

    def forward(self, x):
        return self.conv(x)


def test_grayscale_probe_flags_the_colour_unit_and_not_the_luminance_one():
    from facebias.data.transforms import to_model_input
    from facebias.dissect.nonlocal_units import biased_unit_counts, probe_group_stats
    from facebias.dissect.selection import DictionaryFaces, grayscale_probe

    rng = np.random.default_rng(0)
    n = 40
    skin = np.stack([rng.integers(150, 220, n), rng.integers(90, 140, n), rng.integers(60, 120, n)], axis=1)
    pixels = np.clip(skin[:, None, None, :] + rng.integers(-10, 10, (n, 8, 8, 3)), 0, 255).astype(np.uint8)
    pixels = torch.from_numpy(pixels)
    faces = DictionaryFaces(split="test", rows=np.arange(n), cells=np.zeros((n, 2), dtype=np.int64),
                            gray=np.zeros(n, dtype=bool), pixels=pixels, inputs=to_model_input(pixels))
    net = _ColourAndLuma().eval()
    inputs, flags = grayscale_probe(faces, net, seed=3, batch_size=16)
    assert flags.shape == (n, 1) and int(flags.sum()) == n // 2
    colour = ~flags[:, 0].bool()
    torch.testing.assert_close(inputs[colour], to_model_input(pixels[colour]))  # the other half as it was
    gray_pixels = inputs[~colour] * torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) \
        + torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    torch.testing.assert_close(gray_pixels[:, 0], gray_pixels[:, 1], atol=1e-5, rtol=0)  # R = G on the gray half

    stats = probe_group_stats(net, ["conv"], inputs, flags, ("grayscale",), batch_size=16)
    d = stats["conv"].cohens_d()[0]
    assert d[0] < -2  # R - G falls to 0 on gray faces: the colour unit is biased (toward colour)
    assert abs(float(d[1])) < 0.8  # luminance is what the conversion keeps: not biased
    (count,) = biased_unit_counts(stats)
    assert (count["group"], count["biased"], count["biased_toward_0"]) == ("grayscale", 1, 1)


def test_group_statistics_join_side_by_side_and_refuse_a_repeated_group():
    from facebias.dissect.nonlocal_units import GroupActivationStats

    a = GroupActivationStats.empty(("Male",), 3)
    a.update(torch.arange(6.0).view(2, 3), torch.tensor([[1], [0]]))
    b = GroupActivationStats.empty(("grayscale",), 3)
    b.update(torch.ones(2, 3), torch.tensor([[0], [1]]))
    joined = a.joined(b)
    assert joined.group_names == ("Male", "grayscale")
    torch.testing.assert_close(joined.means()[0], a.means()[0])
    torch.testing.assert_close(joined.means()[1], b.means()[0])
    with pytest.raises(ValueError, match="Male"):
        a.joined(a)
