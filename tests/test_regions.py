"""dissect.py analysis=regions: facial-region explanations.

Known answers on hand-made inputs: the per-region statistic against a hand computation, batched maps equal
FaceX's one-image-per-call maps, a planted dark-band detector scores highest on the region it was planted in
(and moves when the plant moves), bootstrap intervals and the balanced selection by hand, and the bad-input
messages. End to end (slow): the tiny P=50/P=100 runs of test_evaluate.py, explained through dissect.py with
W&B offline and as a sweep.
"""

from __future__ import annotations

import base64
import json
import math
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, compose
from torch import nn

from facebias.explain.cams import (
    compute_cams,
    library_loop_cams,
    method_name,
    output_index,
    randomised_copy,
)
from facebias.explain.statistics import (
    group_statistics,
    high_attention,
    region_masks,
    region_scores,
    select_images,
    spearman,
    top_patches,
)
from facebias.faces.concepts import FACE_PARTS, LOCAL_CONCEPT_REGION, REGIONS
from facebias.faces.dictionary import face_dictionary, random_landmarks
from facebias.models.backbones import small_cnn

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run faster on one thread


# ------------------------------------------------------------------------------------------- the statistic


def test_region_score_by_hand_on_planted_maps_and_masks():
    cam = np.array([[0, 0, 0, 0],
                    [0, .2, .4, 0],
                    [0, 1., .6, 0],
                    [0, 0, 0, 0]], dtype=np.float32)
    # non-zero pixels .2 .4 1 .6: mean .55, so the high part is (2, 1) and (2, 2)
    cams = np.stack([cam, 3 * cam + 5, np.full((4, 4), 0.7, np.float32)])  # an affine copy; a constant map
    assert high_attention(cams)[0].nonzero().tolist() == [[2, 1], [2, 2]]
    assert torch.equal(high_attention(cams)[1], high_attention(cams)[0])
    assert not high_attention(cams)[2].any()  # min-max normalised to all zeros: no high part

    row2 = torch.zeros(4, 4, dtype=torch.bool)
    row2[2] = True
    col1 = torch.zeros(4, 4, dtype=torch.bool)
    col1[:, 1] = True
    corner = torch.zeros(4, 4, dtype=torch.bool)
    corner[0, 0] = True
    empty = torch.zeros(4, 4, dtype=torch.bool)
    # concepts a, b (region A), c (region B), d (region C): A = row 2 | pixel (0, 0)
    concepts = torch.stack([torch.stack([row2, corner, col1, empty])] * 2 + [torch.stack([row2, empty, empty, empty])])
    masks = region_masks(concepts, ["A", "A", "B", "C"], ["A", "B", "C", "D"])
    assert masks.shape == (3, 4, 4, 4) and int(masks[0, 0].sum()) == 5 and not masks[:, 3].any()
    scores = region_scores(high_attention(cams), masks)
    np.testing.assert_allclose(scores[0], [2 / 5, 1 / 4, np.nan, np.nan])
    np.testing.assert_allclose(scores[1], scores[0])
    np.testing.assert_allclose(scores[2], [0.0, np.nan, np.nan, np.nan])  # no high part; B absent in image 2

    # averaged over the images where the region exists (A: 3 images, B: 2)
    rows = group_statistics(scores, np.array([0, 0, 1]), ["A", "B", "C", "D"], n_bootstrap=0)
    a, b, c = rows[0], rows[1], rows[2]
    assert a["all"] == pytest.approx((0.4 + 0.4 + 0.0) / 3) and a["n"] == 3
    assert a["g0"] == pytest.approx(0.4) and a["g1"] == 0.0 and a["diff"] == pytest.approx(-0.4)
    assert b["all"] == pytest.approx(0.25) and b["n"] == 2 and math.isnan(b["g1"]) and b["n_g1"] == 0
    assert math.isnan(c["all"]) and math.isnan(a["diff_low"])  # no bootstrap: no interval


def test_bootstrap_intervals_are_seeded_resamples_within_groups():
    rng = np.random.default_rng(0)
    per_image = rng.uniform(size=(40, 2))
    per_image[:20, 1] += 1.0  # region 1: group 0 much higher
    groups = np.array([0] * 20 + [1] * 20)
    rows = group_statistics(per_image, groups, ["x", "y"], n_bootstrap=400, seed=3)
    assert rows == group_statistics(per_image, groups, ["x", "y"], n_bootstrap=400, seed=3)
    assert rows != group_statistics(per_image, groups, ["x", "y"], n_bootstrap=400, seed=4)
    for row in rows:
        for key in ("all", "g0", "g1", "diff"):
            assert row[f"{key}_low"] <= row[key] <= row[f"{key}_high"]
    y = rows[1]
    assert y["diff"] == pytest.approx(per_image[20:, 1].mean() - per_image[:20, 1].mean())
    assert y["diff_high"] < -0.5  # the planted gap is far outside the interval around 0
    assert rows[0]["diff_low"] < 0 < rows[0]["diff_high"]  # no gap planted in region x
    # the interval of a group mean is about +-1.96 standard errors
    se = per_image[:20, 0].std(ddof=1) / math.sqrt(20)
    assert rows[0]["g0_high"] - rows[0]["g0_low"] == pytest.approx(2 * 1.96 * se, rel=0.25)


def test_selection_is_the_chosen_class_balanced_over_protected():
    targets = np.array([1] * 12 + [0] * 8)
    protected = np.array([0, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1] + [0] * 8)
    picked = select_images(targets, protected, 1, None, seed=0)
    assert (targets[picked] == 1).all() and np.bincount(protected[picked]).tolist() == [2, 2]
    assert np.array_equal(picked, np.sort(picked)) and {0, 7} <= set(picked.tolist())
    assert np.array_equal(picked, select_images(targets, protected, 1, None, seed=0))
    assert len(select_images(targets, protected, 1, 2, seed=0)) == 2  # max_images=2: one per group
    with pytest.raises(ValueError, match=r"'Eyeglasses' must be binary \(0/1\); values found: 0, 1, 2"):
        select_images(targets, np.where(np.arange(20) == 3, 2, protected), 1, None, 0, "Male", "Eyeglasses")
    with pytest.raises(ValueError, match=r"all in one protected group \(Eyeglasses: 8 with 0, 0 with 1\)"):
        select_images(targets, protected, 0, None, 0, "Male", "Eyeglasses")
    with pytest.raises(ValueError, match=r"target_class=1: no image has Male=1 \(values found: 0\)"):
        select_images(np.zeros(5), np.zeros(5), 1, None, 0, "Male")


def test_top_patch_is_the_window_with_most_map_mass_inside_the_region():
    cams = np.zeros((3, 8, 8), np.float32)
    cams[0, 5:7, 1:3] = 1.0  # image 0: mass 4 in the bottom-left
    cams[1, 0:2, 0:2] = 0.5  # image 1: mass 2 in the top-left
    masks = torch.zeros(3, 2, 8, 8, dtype=torch.bool)
    masks[:, 0] = True  # region 0 covers everything
    masks[:, 1, :4] = True  # region 1: the top half only
    patches = top_patches(cams, masks, k=5, size=4)
    assert [p["image"] for p in patches[0]] == [0, 1]  # image 2 has no mass: no slot
    assert patches[0][0]["mass"] == pytest.approx(4.0) and patches[0][1]["mass"] == pytest.approx(2.0)
    top, left = patches[0][0]["top"], patches[0][0]["left"]
    assert top <= 5 and top + 4 >= 7 and left <= 1 and left + 4 >= 3  # the window holds the planted block
    assert [p["image"] for p in patches[1]] == [1]  # image 0's mass lies outside region 1


# ------------------------------------------------------------------------------------------- the maps


@pytest.mark.parametrize("method", ["GradCAM", "GradCAM++", "LayerCAM", "EigenCAM"])
def test_batched_maps_equal_one_image_per_call(method):
    torch.manual_seed(0)
    net = small_cnn(2).eval()
    inputs = torch.randn(7, 3, 32, 32)
    for layer in ("1", "2"):
        batched = compute_cams(net, layer, inputs, head=1, target_class=1, method=method, batch_size=3)
        single = library_loop_cams(net, layer, inputs, head=1, target_class=1, method=method)
        assert batched.shape == (7, 32, 32) and batched.dtype == np.float32
        np.testing.assert_allclose(batched, single, atol=1e-4)
    assert all(p.requires_grad for p in net.parameters())  # the frozen weights are given back


def test_class_zero_explains_the_negated_logit():
    torch.manual_seed(1)
    net = small_cnn(1).eval()
    inputs = torch.randn(4, 3, 32, 32)
    one = compute_cams(net, "2", inputs, target_class=1)
    zero = compute_cams(net, "2", inputs, target_class=0)
    assert not np.allclose(one, zero)
    np.testing.assert_allclose(zero, library_loop_cams(net, "2", inputs, target_class=0), atol=1e-4)


class DarkBandDetector(nn.Module):
    """features: how dark each 4x4 cell is (1 - mean intensity, a fixed 1x1 conv); the logit: their mean.
    Grad-CAM's channel weight is then a positive constant, so the map is the darkness map itself."""

    def __init__(self):
        super().__init__()
        conv = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            conv.weight.fill_(-1 / 3)
            conv.bias.fill_(1.0)
        self.features = nn.Sequential(conv, nn.ReLU(), nn.AvgPool2d(4))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        return self.head(self.features(x))


def _planted_faces(dark_regions: set[str], n: int = 12, size: int = 64):
    dictionary = face_dictionary(random_landmarks(n, seed=2), mask_size=size, concepts=FACE_PARTS)
    regions = region_masks(dictionary.masks, dictionary.regions, REGIONS)
    dark = regions[:, [REGIONS.index(r) for r in dark_regions]].any(dim=1)
    images = torch.where(dark[:, None], 0.0, 1.0).expand(n, 3, size, size).contiguous()
    return images, regions


@pytest.mark.parametrize("planted", ["eye", "mouth"])
def test_a_planted_band_detector_scores_highest_on_its_region(planted):
    images, masks = _planted_faces({planted})
    net = DarkBandDetector().eval()
    cams = compute_cams(net, "features", images, method="GradCAM", batch_size=5)
    scores = np.nanmean(region_scores(high_attention(cams), masks), axis=0)
    order = np.argsort(-scores)
    assert REGIONS[order[0]] == planted, dict(zip(REGIONS, scores.round(3), strict=True))
    assert scores[order[0]] > 0.5 and scores[order[0]] > 2 * scores[order[1]]
    # the group statistic sees the same: half the faces in each group
    rows = group_statistics(region_scores(high_attention(cams), masks), np.arange(12) % 2, REGIONS, 200, 0)
    best = max(rows, key=lambda r: r["all"])
    assert best["region"] == planted and best["g0_low"] > 0.3 and best["g1_low"] > 0.3


def test_randomised_copy_keeps_the_architecture_and_leaves_the_model_alone():
    torch.manual_seed(0)
    net = small_cnn(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    first, second = randomised_copy(net, seed=5), randomised_copy(net, seed=5)
    assert list(first.state_dict()) == list(before)
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key])  # the trained model is untouched
        assert torch.equal(first.state_dict()[key], second.state_dict()[key])  # seeded
    changed = [k for k in before if k.endswith("weight") and not torch.equal(first.state_dict()[k], before[k])]
    assert len(changed) == len([k for k in before if k.endswith("weight")])
    assert not torch.equal(randomised_copy(net, seed=6).state_dict()["0.0.weight"], first.state_dict()["0.0.weight"])


def test_sanity_correlation_of_the_planted_detector_and_its_randomised_copy():
    """The planted detector's ranking vs its randomised copy's: computed, reported as a number in [-1, 1]."""
    images, masks = _planted_faces({"eye"})
    net = DarkBandDetector().eval()
    trained = np.nanmean(region_scores(high_attention(compute_cams(net, "features", images)), masks), 0)
    random = np.nanmean(region_scores(high_attention(compute_cams(randomised_copy(net, 0), "features", images)),
                                      masks), 0)
    rho = spearman(trained, random)
    assert rho is None or -1.0 <= rho <= 1.0
    assert spearman([1, 2, 3, 4], [2, 4, 6, 9]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [5, 5, 5]) is None and spearman([1, np.nan], [1, 2]) is None


# ------------------------------------------------------------------------------------------- bad input


def test_bad_options_give_clear_errors():
    from facebias.analyses.regions import RegionExplanation, resolve_layer

    net = small_cnn(1)
    with pytest.raises(ValueError, match=r"layer=5: 5 outputs \(1, 256\), not a \(batch, units, h, w\) feature map; "
                                         r"choose among: 0 \(32, 16, 16\)"):
        resolve_layer(net, "5", 32)
    with pytest.raises(ValueError, match=r"layer=layer4: Sequential has no layer 'layer4'. Valid names"):
        resolve_layer(net, "layer4", 32)
    with pytest.raises(ValueError, match=r"layer=4: its map is 1x1 at 32 px.*choose among: 0 \(32, 16, 16\)"):
        resolve_layer(net, "4", 32)
    assert resolve_layer(net, None, 32) == ("3", (256, 2, 2))  # the deepest block larger than 1x1
    with pytest.raises(ValueError, match=r"target_class=2 is out of range: each head of this model is binary"):
        output_index(1, 0, 2)
    with pytest.raises(ValueError, match=r"head index 1 is out of range: the network has 1 output"):
        output_index(1, 1, 1)
    with pytest.raises(ValueError, match=r"method='gradcam3': unknown CAM method; use one of GradCAM, GradCAM\+\+"):
        method_name("gradcam3")
    assert method_name("gradcamplusplus") == method_name("Grad-CAM++") == "GradCAM++"
    assert method_name("scorecam") == "ScoreCAM"
    analysis = RegionExplanation()
    with pytest.raises(ValueError, match=r"target_class=2 is out of range"):
        analysis.settings(compose(["analysis=regions", "target_class=2", "logger=none"], "dissect"))
    with pytest.raises(ValueError, match=r"method='Grad': unknown CAM method"):
        analysis.settings(compose(["analysis=regions", "method=Grad", "logger=none"], "dissect"))
    settings = analysis.settings(compose(["analysis=regions", "logger=none", "data.protected=Male"], "dissect"))
    assert settings["method"] == "GradCAM" and settings["target_class"] == 1 and settings["layer"] is None
    assert settings["protected_override"] == "Male" and settings["n_bootstrap"] == 1000


# ------------------------------------------------------------------------------------------- geometry, pictures


def test_crop_none_landmarks_draw_the_same_masks_as_the_reference_crop():
    """A crop=none image that is the reference crop scaled x2 and padded: its masks equal the crop's."""
    from facebias.explain.faces import crop_frame_landmarks

    aligned = random_landmarks(6, seed=1)
    # a 276x256 image whose centre square (left (276 - 256) // 2 = 10, top 0) is the reference crop scaled x2:
    # pixel centres x + .5 = 10 + 2 * (p + .5 - 25) for an aligned landmark p (y: 0 + 2 * (p + .5 - 57))
    source = (aligned + 0.5 - np.array([25, 57])) * 2 + np.array([10, 0]) - 0.5
    remapped = crop_frame_landmarks(source, np.tile([276, 256], (6, 1)))
    np.testing.assert_allclose(remapped, aligned, atol=1e-4)
    a = face_dictionary(aligned, mask_size=32, concepts=FACE_PARTS).masks
    b = face_dictionary(remapped, mask_size=32, concepts=FACE_PARTS).masks
    assert (a != b).float().mean() < 1e-3


def test_template_heatmap_and_patch_figures(tmp_path):
    from facebias.explain.figures import Panel, face_template, heatmap_figure, patch_figure

    dictionary = face_dictionary(random_landmarks(20, seed=0), mask_size=128, concepts=FACE_PARTS)
    template = face_template(region_masks(dictionary.masks, dictionary.regions, REGIONS), REGIONS)
    assert set(np.unique(template.labels)) == {-1, *range(len(REGIONS))}  # every region drawn, plus background
    eye = template.labels == REGIONS.index("eye")
    mouth = template.labels == REGIONS.index("mouth")
    assert np.nonzero(eye)[0].mean() < np.nonzero(mouth)[0].mean()  # eyes above the mouth
    values = dict(zip(REGIONS, np.linspace(0, 1, len(REGIONS)), strict=True))
    path = heatmap_figure(tmp_path / "h.png", template, [Panel("a", values, 0, 1), Panel("d", {}, -1, 1)], "t")
    assert path.stat().st_size > 5_000
    pixels = torch.randint(0, 255, (3, 32, 32, 3), dtype=torch.uint8)
    patches = [[{"image": 0, "top": 2, "left": 3, "mass": 1.0}], []]
    assert patch_figure(tmp_path / "p.png", ["eye", "nose"], patches, pixels, np.array([0, 1, 0]), 16).is_file()
    assert set(LOCAL_CONCEPT_REGION.values()) == set(REGIONS)


# ------------------------------------------------------------------------------------------- end to end


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


@pytest.fixture(scope="module")
def p100_run(data_dir) -> Path:
    from test_evaluate import shared_sweep

    from facebias.runs import find_runs

    (run_dir,) = [p for p in find_runs(shared_sweep(data_dir), "train") if "p100" in p.name]
    return run_dir


@pytest.mark.slow
def test_dissect_py_explains_a_run_with_report_and_wandb(p100_run, tmp_path):
    from test_evaluate import run_script
    from wandb_records import find_runs, read_run

    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb_dir"), "WANDB_SILENT": "true"}
    result = run_script("dissect.py", "analysis=regions", f"run={p100_run}", "layer=2", "n_bootstrap=200",
                        f"paths.root_dir={tmp_path}", "logger=wandb", "device=cpu", env=env)
    (out,) = [p.parent for p in (tmp_path / "outputs" / "dissect").rglob("regions.json")]
    summary = json.loads((out / "regions.json").read_text())
    assert summary["job"] == "explain-regions" and summary["P"] == 100 and summary["protected"] == "Eyeglasses"
    assert summary["head"] == "Male" and summary["target_class"] == 1 and summary["layer"] == "2"
    assert summary["layer_shape"] == [128, 4, 4] and summary["method"] == "GradCAM"
    sel = summary["selection"]  # the balanced test split: 16 per (Male, Eyeglasses) cell
    assert sel["n_images"] == 32 and sel["per_group"] == 16
    rows = {r["region"]: r for r in summary["regions"]}
    assert list(rows) == list(REGIONS)
    for r in rows.values():
        assert r["n"] == 32 and 0.0 <= r["all"] <= 1.0
        assert r["diff"] == pytest.approx(r["g1"] - r["g0"])
        assert r["diff_low"] <= r["diff"] <= r["diff_high"]
        assert r["random_weights"] is None or 0.0 <= r["random_weights"] <= 1.0
    sanity = summary["sanity"]
    assert sanity["rho"] is None or -1.0 <= sanity["rho"] <= 1.0
    assert "sanity check" in result.stdout and "Spearman rho(trained, randomised weights)" in result.stdout

    html = (out / "report.html").read_text()
    parser = _Images()
    parser.feed(html)
    assert len(parser.sources) == 2 and "Sanity check: randomised weights" in html
    for source in parser.sources:
        assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("plots/heatmaps.png", "plots/patches.png", "region_scores.csv", "image_scores.csv"):
        assert (out / name).stat().st_size > 1_000 or name.endswith(".csv"), name
    record = json.loads((out / "run.json").read_text())
    assert record["kind"] == "regions" and record["status"] == "finished"
    if shutil.which("chromium"):  # the report opens in a browser with its pictures (scripts/screenshot.sh)
        from PIL import Image

        shot = tmp_path / "report.png"
        subprocess.run([str(REPO / "scripts" / "screenshot.sh"), str(out / "report.html"), str(shot)], check=True,
                       capture_output=True, timeout=120)
        pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
        colours = np.unique(pixels, axis=0)
        assert len(colours) > 2_000, "the screenshot looks blank: the report's images did not render"

    (path,) = find_runs(out)
    logged = read_run(path)
    assert logged["job_type"] == "explain"
    history = {k: v for step in logged["history"] for k, v in step.items()}
    assert history["explain/plots/heatmaps/_type"] == "image-file"
    assert history["explain/report/_type"] == "html-file"
    assert logged["summary"]["explain/eye/score"] == pytest.approx(rows["eye"]["all"])


@pytest.mark.slow
def test_sweep_rows_per_run_and_region_and_reuse(p100_run, tmp_path):
    from facebias.analyses.driver import analyse

    sweep = p100_run.parent
    cfg = compose(["analysis=regions", f"sweep={sweep}", "logger=none", "layer=2", "n_bootstrap=50",
                   "sanity=false", "top_patches=0", f"paths.root_dir={tmp_path}"], "dissect")
    summary = analyse(cfg, tmp_path / "out")
    rows = summary["rows"]
    assert sorted({(r["P"], r["region"]) for r in rows}) == sorted((p, r) for p in (50.0, 100.0) for r in REGIONS)
    assert len(rows) == 2 * len(REGIONS) and all(r["sanity_rho"] is None for r in rows)
    eye = [c for c in summary["spearman"] if c["region"] == "eye"]
    assert len(eye) == 1 and eye[0]["runs"] == 2
    assert (tmp_path / "out" / "regions_vs_p.png").stat().st_size > 10_000
    stamps = {p: p.stat().st_mtime_ns for p in sweep.glob("*/regions/regions.json")}
    assert len(stamps) == 2
    analyse(cfg, tmp_path / "again")  # same settings: reused, not redone
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
