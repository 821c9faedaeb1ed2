"""dissect.py: network dissection of trained runs and the controlled-experiment sweep figures.

Pieces with known answers (balanced face selection, patch boxes, layer checks, sweep rows and Spearman's
rho) are tested on hand-made inputs; the end-to-end tests dissect the tiny P=50/P=100 runs that
test_evaluate.py trains once per session and compare the unit thresholds and each unit's IoU with a
recomputation here. The known answer (a unit built to detect the eye band is an eye-region detector) is
in test_known_answers.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import compose
from test_evaluate import run_script, shared_sweep
from wandb_records import find_runs, read_run

from facebias.analyses.driver import analyse
from facebias.analyses.units import ALL_LAYERS, spearman, spearman_rows, sweep_rows
from facebias.dissect.layers import default_blocks, feature_map_layers, resolve_layers
from facebias.dissect.patches import region_box
from facebias.dissect.selection import balanced_subset
from facebias.faces.dictionary import dictionary_for_table
from facebias.models.backbones import small_cnn
from facebias.reporting.files import read_csv
from facebias.runs import RunNotFoundError
from facebias.runs import find_runs as find_run_dirs

# ---------------------------------------------------------------------------------------------- units


def test_balanced_subset_water_fills_the_cells():
    cells = np.array([[0, 0]] * 2 + [[0, 1]] * 10 + [[1, 0]] * 10 + [[1, 1]] * 10)
    picked = balanced_subset(cells, 14, seed=0)
    _, counts = np.unique(cells[picked], axis=0, return_counts=True)
    assert counts.tolist() == [2, 4, 4, 4]  # the small cell gives up its share: 14 = 2 + 3 * 4
    assert np.all(np.diff(picked) > 0) and len(set(picked)) == 14
    assert np.array_equal(picked, balanced_subset(cells, 14, seed=0))
    assert not np.array_equal(picked, balanced_subset(cells, 14, seed=1))
    assert np.array_equal(balanced_subset(cells, None, 0), np.arange(32))
    assert np.array_equal(balanced_subset(cells, 99, 0), np.arange(32))


def test_patch_box_is_where_the_bilinearly_upsampled_map_exceeds_the_threshold():
    # 2x2 -> 8x8 (align_corners=False): along each axis the weight of the first cell is
    # 1, 1, .875, .625, .375, .125, 0, 0. Products above 0.5: rows/cols 0..3 (e.g. .625 * .875 = .547).
    activation = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    assert region_box(activation, 0.5, 8) == (0, 0, 4, 4)
    assert region_box(activation, 0.9, 8) == (0, 0, 2, 2)  # only the cells with weight 1 on both axes
    assert region_box(activation, 1.0, 8) is None  # strictly above T_u
    assert region_box(torch.tensor([[0.0, 0.0], [0.0, 1.0]]), 0.5, 8) == (4, 4, 8, 8)


def test_patches_from_recorded_maxima_equal_those_of_their_own_pass():
    from facebias.dissect.patches import UnitMaxima, top_patches

    torch.manual_seed(0)
    net = small_cnn(1).eval()
    inputs = torch.randn(20, 3, 32, 32)
    maxima = UnitMaxima(net, ["1", "2"], n_images=20)
    with torch.no_grad(), maxima.attached():
        net(inputs[:12])
        net(inputs[12:])
        net(inputs)  # a second pass over the same data: ignored
    with torch.no_grad():
        block2 = net[:3](inputs)
    assert maxima.complete
    torch.testing.assert_close(maxima.of("2"), block2.amax(dim=(2, 3)))
    detectors = [{"layer": "2", "unit": 5, "threshold": float(block2[:, 5].amax(dim=(1, 2)).median())},
                 {"layer": "1", "unit": 0, "threshold": 0.0}]
    recorded = top_patches(net, inputs, detectors, n_images=4, batch_size=8, maxima=maxima)
    own = top_patches(net, inputs, detectors, n_images=4, batch_size=8)
    assert recorded == own and len(own[0]) == 4
    best = int(block2[:, 5].amax(dim=(1, 2)).argmax())
    assert own[0][0].image == best and own[0][0].activation == pytest.approx(float(block2[best, 5].max()))


def test_layers_default_to_the_blocks_and_unknown_names_list_the_valid_ones():
    net = small_cnn(1)
    layers, maps = resolve_layers(net, None, 32)
    assert layers == ["0", "1", "2", "3"]
    assert maps["3"] == (1, 256, 2, 2) and maps["4"] == (1, 256, 1, 1) and "5" not in maps
    assert resolve_layers(net, ["2", "0.0"], 32)[0] == ["2", "0.0"]
    with pytest.raises(ValueError, match=r"no layer 'layer4'.*Valid names.*0 \(32, 16, 16\).*3 \(256, 2, 2\)"):
        resolve_layers(net, ["layer4"], 32)
    with pytest.raises(ValueError, match=r"5 outputs \(1, 256\), not a \(batch, units, h, w\) feature map"):
        resolve_layers(net, ["5"], 32)
    import torchvision

    resnet = torchvision.models.resnet18(weights=None)
    _, resnet_maps = feature_map_layers(resnet, 64)
    assert default_blocks(resnet, resnet_maps) == ["layer1", "layer2", "layer3", "layer4"]  # 2x2 at 64 px
    _, small_maps = feature_map_layers(resnet, 32)
    assert default_blocks(resnet, small_maps) == ["layer1", "layer2", "layer3"]  # layer4 is 1x1 at 32 px


def _fake_dissection(family, concept, p, eye_per_layer, gray_per_layer=None, seed=0):
    layers = {}
    for k, (name, eye) in enumerate(eye_per_layer.items()):
        biased = {"Male": {"biased": 1, "toward_1": 1, "toward_0": 0}}
        if gray_per_layer is not None:
            biased["grayscale"] = {"biased": gray_per_layer[name], "toward_1": gray_per_layer[name], "toward_0": 0}
        layers[name] = {"units": 10 * (k + 1), "detectors": eye + 1, "by_region": {"eye": eye, "mouth": 1},
                        "biased": biased}
    return {"family": family, "concept": concept, "P": p, "experiment": f"{family}{p}", "train_seed": seed,
            "layers": layers, "source": {"run_dir": f"/runs/{family}{p}"}}


def test_sweep_rows_and_spearman_rho_by_hand(tmp_path):
    eye = {50: (0, 1), 60: (1, 2), 70: (1, 1), 80: (2, 2)}  # per run: layers a, b -> totals 1, 3, 2, 4
    entries = [(tmp_path / str(p), _fake_dissection("eyeglasses", "Eyeglasses", p, {"a": a, "b": b}))
               for p, (a, b) in reversed(eye.items())]
    entries += [(tmp_path / f"g{p}", _fake_dissection("grayscale", "grayscale", p, {"a": 0, "b": 0},
                                                      {"a": g, "b": 2 * g})) for p, g in ((100, 7), (50, 3))]
    rows = sweep_rows(entries)
    eyeglasses = [r for r in rows if r["family"] == "eyeglasses"]
    assert [(r["P"], r["layer"]) for r in eyeglasses[:3]] == [(50, "a"), (50, "b"), (50, ALL_LAYERS)]
    totals = [r for r in eyeglasses if r["layer"] == ALL_LAYERS]
    assert [r["eye_detectors"] for r in totals] == [1, 3, 2, 4] and totals[0]["units"] == 30
    assert totals[0]["eye_share"] == pytest.approx(1 / 30) and totals[0]["grayscale_biased"] is None
    gray_total = [r for r in rows if r["family"] == "grayscale" and r["layer"] == ALL_LAYERS]
    assert [(r["P"], r["grayscale_biased"]) for r in gray_total] == [(50, 9), (100, 21)]
    assert {r["measure"] for r in rows if r["family"] == "grayscale"} == {"grayscale_biased"}

    rho = {(c["family"], c["measure"], c["layer"]): c for c in spearman_rows(rows)}
    # totals 1, 3, 2, 4 against P: 1 - 6 * (0 + 1 + 1 + 0) / (4 * 15) = 0.8
    assert rho[("eyeglasses", "eye_detectors", ALL_LAYERS)]["rho"] == pytest.approx(0.8)
    # layer a: 0, 1, 1, 2 (tie -> ranks 1, 2.5, 2.5, 4): Pearson of ranks = 4.5 / sqrt(5 * 4.5)
    assert rho[("eyeglasses", "eye_detectors", "a")]["rho"] == pytest.approx(3 / math.sqrt(10))
    assert rho[("eyeglasses", "eye_detectors", "b")]["rho"] == pytest.approx(1 / math.sqrt(5))
    assert rho[("eyeglasses", "eye_detectors", "a")]["seed_measure"]
    assert rho[("grayscale", "grayscale_biased", "b")]["rho"] == pytest.approx(1.0)
    assert rho[("grayscale", "grayscale_biased", "b")]["p_value"] is None  # two points: no p-value
    assert rho[("grayscale", "eye_detectors", ALL_LAYERS)]["rho"] is None  # constant 0: undefined
    assert rho[("eyeglasses", "eye_detectors", ALL_LAYERS)]["rho_means"] == pytest.approx(0.8)  # one run per P
    assert ("eyeglasses", "grayscale_biased", "a") not in rho  # no grayscale group in that family
    assert spearman([1, 2, 3], [3, 2, 1])[0] == pytest.approx(-1.0)


def test_spearman_over_per_p_means_with_seeds_by_hand(tmp_path):
    """Several seeds per P: rho over the runs counts seed noise as disagreement, rho_means reads the trend."""
    counts = {50: (0, 2), 60: (1, 0), 70: (3, 1), 80: (2, 4)}  # per-P means 1, 0.5, 2, 3 -> ranks 2, 1, 3, 4
    entries = [(tmp_path / f"{p}_{seed}", _fake_dissection("eyeglasses", "Eyeglasses", p, {"a": n}, seed=seed))
               for p, pair in counts.items() for seed, n in enumerate(pair)]
    (total,) = [c for c in spearman_rows(sweep_rows(entries)) if c["measure"] == "eye_detectors"
                and c["layer"] == ALL_LAYERS]
    # ranks of the means 2, 1, 3, 4 against 1, 2, 3, 4: 1 - 6 * (1 + 1 + 0 + 0) / (4 * 15) = 0.8
    assert total["rho_means"] == pytest.approx(0.8) and total["runs"] == 8 and total["P_values"] == 4
    # over the 8 runs (values 0 2 1 0 3 1 2 4, average ranks for ties) Pearson of ranks, computed independently
    p_ranks = np.array([1.5, 1.5, 3.5, 3.5, 5.5, 5.5, 7.5, 7.5])
    v_ranks = np.array([1.5, 5.5, 3.5, 1.5, 7, 3.5, 5.5, 8])
    assert total["rho"] == pytest.approx(np.corrcoef(p_ranks, v_ranks)[0, 1])
    assert total["rho"] < total["rho_means"]


def test_options_are_checked_before_anything_runs(tmp_path):
    from hydra.errors import MissingConfigException

    with pytest.raises(RunNotFoundError, match=r"sweep=/somewhere: no such file or directory"):
        analyse(compose(["sweep=/somewhere", "logger=none"], "dissect"), tmp_path)
    with pytest.raises(ValueError, match=r"analysis=layers has no sweep form"):
        analyse(compose(["analysis=layers", f"sweep={tmp_path}", "logger=none"], "dissect"), tmp_path)
    with pytest.raises(ValueError, match=r"name what to analyse: run=<training run dir>"):
        analyse(compose(["logger=none"], "dissect"), tmp_path)
    with pytest.raises(MissingConfigException, match=r"analysis.*nosuch"):  # Hydra lists the valid options
        compose(["analysis=nosuch", "logger=none"], "dissect")


# ------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def sweep_dir(data_dir) -> Path:
    return shared_sweep(data_dir)


@pytest.fixture(scope="module")
def p100_run(sweep_dir) -> Path:
    (run_dir,) = [p for p in find_run_dirs(sweep_dir, "train") if "p100" in p.name]
    return run_dir


@pytest.fixture(scope="module")
def dissected(p100_run, tmp_path_factory):
    """dissect.py on the P=100 run, layers 2 and 3 of small_cnn, W&B offline in a temp dir."""
    root = tmp_path_factory.mktemp("dissect_p100")
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(root / "wandb_dir"), "WANDB_SILENT": "true"}
    result = run_script("dissect.py", "analysis=units", f"run={p100_run}", "layers=[2,3]", f"paths.root_dir={root}",
                        "logger=wandb", "exact_check_images=16", "top_detectors=3", "top_images=3", env=env)
    (out,) = [p.parent for p in (root / "outputs" / "dissect").rglob("dissect.json")]
    return out, json.loads((out / "dissect.json").read_text()), result


def recompute_activations(run_dir: Path, layer: int) -> tuple[torch.Tensor, object]:
    """One small_cnn block's activations (N, U, h, w) over the run's test faces, in split order, and the
    data module: a forward pass here, without the dissection's code."""
    from omegaconf import OmegaConf

    from facebias.data.datamodule import FaceDataModule
    from facebias.models.classifier import AttributeClassifier

    data = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml").data, resolve=True)
    data.pop("_target_")
    datamodule = FaceDataModule(**data)
    datamodule.setup()
    model = AttributeClassifier.load_from_checkpoint(run_dir / "checkpoints" / "best.ckpt", weights_only=True,
                                                     map_location="cpu").eval()
    captured = []
    handle = model.net[layer].register_forward_hook(lambda _m, _i, output: captured.append(output))
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            model(model.preprocess(batch)["image"])
    handle.remove()
    return torch.cat(captured), datamodule


def thresholds_by_definition(acts: torch.Tensor, quantile: float = 0.005) -> torch.Tensor:
    """T_u by definition: the ceil(q * N*h*w)-th largest activation of each unit over all images and positions."""
    values = acts.transpose(0, 1).reshape(acts.shape[1], -1)
    k = math.ceil(quantile * values.shape[1])
    return values.sort(dim=1, descending=True).values[:, k - 1]


def iou_by_definition(acts: torch.Tensor, thresholds: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(U, C) IoU: each map upsampled bilinearly to the mask size and thresholded at T_u, intersections and
    unions summed over every image (one matrix product over all of them).

    The upsampling runs in float64, where it is exact here (float32 values times weights that are multiples
    of 1/32), so a pixel whose value is exactly T_u (e.g. the replicated border of the cell holding T_u) is
    off, as ``> T_u`` says; in float32, (1 - a) T_u + a T_u can round to just above T_u."""
    size = masks.shape[-2:]
    maps = F.interpolate(acts.double(), size=size, mode="bilinear", align_corners=False)
    on = (maps > thresholds.double()[None, :, None, None]).transpose(0, 1).flatten(1).float()  # (U, N*S*S)
    labels = masks.transpose(0, 1).flatten(1).float()  # (C, N*S*S)
    intersection = on @ labels.T
    union = on.sum(1)[:, None] + labels.sum(1)[None, :] - intersection
    return torch.where(union > 0, intersection / union.clamp_min(1), torch.zeros_like(union))


def test_units_csv_has_one_row_per_unit_and_exact_thresholds(dissected, p100_run):
    out, summary, _ = dissected
    units = read_csv(out / "units.csv")
    assert list(units[0]) == ["layer", "unit", "concept", "region", "iou", "detector", "level", "sibling",
                              "sibling_iou", "threshold"]
    for layer, width in (("2", 128), ("3", 256)):  # small_cnn(width=32): blocks of 32, 64, 128, 256 units
        mine = [r for r in units if r["layer"] == layer]
        assert [int(r["unit"]) for r in mine] == list(range(width))
        assert summary["layers"][layer]["units"] == width
        assert summary["layers"][layer]["detectors"] == sum(r["detector"] == "True" for r in mine)
    assert len(units) == 128 + 256
    acts, datamodule = recompute_activations(p100_run, 3)
    expected = thresholds_by_definition(acts)
    mine = [r for r in units if r["layer"] == "3"]
    got = torch.tensor([float(r["threshold"]) for r in mine])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # each unit's best concept and IoU, recomputed from the forward pass and the test faces' dictionary masks
    concepts = summary["dictionary"]["concepts"]
    masks = dictionary_for_table(datamodule.table, datamodule.dataset("test").rows, mask_size=32,
                                 concepts=concepts, landmarks=summary["settings"]["landmarks"]).masks
    iou = iou_by_definition(acts, expected, masks)
    # the dissection upsamples in float32 and may switch on pixels that sit at T_u to within float32 rounding
    # (measured: 10 of the 256 units, IoU off by at most 6e-4 at 2 threads, 1.2e-3 at 1 thread); so each unit's
    # IoU must lie between the definition's at T_u nudged down and up by 1e-5 relative (a wrong layer, mask or
    # face order is off by far more), with 1e-4 to spare
    nudge = 1e-5 * expected.abs().clamp_min(1e-6)
    low, high = (iou_by_definition(acts, expected - nudge, masks).max(1).values,
                 iou_by_definition(acts, expected + nudge, masks).max(1).values)
    top2 = iou.topk(2, dim=1).values
    assert (top2[:, 0] > 0).sum() > 100  # not a trivially empty case
    tolerance = 1e-3
    for row, (best, second), unit_iou, a, b in zip(mine, top2.tolist(), iou, low.tolist(), high.tolist(), strict=True):
        assert min(a, b, best) - 1e-4 <= float(row["iou"]) <= max(a, b, best) + 1e-4, (row, a, best, b)
        if abs(best - 0.04) > tolerance:
            assert row["detector"] == str(best > 0.04), row
        if best > second + tolerance:
            assert row["concept"] == concepts[int(unit_iou.argmax())], row

    d = summary["dictionary"]
    assert d["split"] == "test" and d["n_images"] == 64 and d["mask_size"] == 32  # the run's 32 px input
    assert d["cells"] == {"y0_c0": 16, "y0_c1": 16, "y1_c0": 16, "y1_c1": 16}  # the balanced test split
    assert d["groups"] == ["Male", "Young", "Pale_Skin"] and d["gray_images"] == 0  # eyeglasses: no grayscale
    by_region = {r["layer"]: r for r in read_csv(out / "detectors_by_region.csv")}
    for layer in ("2", "3"):
        regions = ("eye", "nose", "mouth", "cheek", "chin", "forehead", "hair")
        assert sum(int(by_region[layer][r]) for r in regions) == summary["layers"][layer]["detectors"]
    # eyeglasses planted no grayscale: the grayscale group comes from the probe (half of the 64 faces in gray)
    assert summary["grayscale_probe"]["images"] == 64 and summary["grayscale_probe"]["gray"] == 32
    biased = read_csv(out / "biased_units.csv")
    assert {(r["layer"], r["group"]) for r in biased} == {(lay, g) for lay in "23" for g in [*d["groups"], "grayscale"]}
    nonlocal_rows = read_csv(out / "nonlocal_units.csv")
    male3 = [r for r in nonlocal_rows if r["layer"] == "3" and r["group"] == "Male"]
    flagged = sum(abs(float(r["cohens_d"])) > 0.8 for r in male3)
    assert summary["layers"]["3"]["biased"]["Male"]["biased"] == flagged
    assert "Cohen's d" in summary["nonlocal_rule"] and "0.8" in summary["nonlocal_rule"]


def test_report_quality_and_wandb(dissected, p100_run):
    out, summary, result = dissected
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2 and "Cohen" in html and "Detectors per face region" in html
    for name in ("plots/detectors_by_region.png", "plots/biased_units.png", "plots/top_patches.png"):
        assert (out / name).stat().st_size > 5_000, name
    quality = summary["dictionary_quality"]  # SynthFaces: ellipses scored against the exact masks
    assert quality["images"] == 16 and set(quality["mean_iou"]) >= {"eyes", "mouth", "Eyeglasses"}
    assert all(v is None or 0.0 <= v <= 1.0 for v in quality["mean_iou"].values())
    assert len(read_csv(out / "dictionary_quality.csv")) == len(quality["mean_iou"])
    assert 1 <= len(summary["strongest_detectors"]) <= 3

    (path,) = find_runs(out)
    record = read_run(path)
    train_group = json.loads((p100_run / "metrics.json").read_text())["wandb"]["group"]
    assert record["job_type"] == "dissect" and record["group"] == train_group
    logged = {k: v for step in record["history"] for k, v in step.items()}
    assert logged["dissect/units/_type"] == "table-file" and logged["dissect/units/nrows"] == 384
    assert logged["dissect/plots/detectors_by_region/_type"] == "image-file"
    assert logged["dissect/report/_type"] == "html-file"
    assert record["summary"]["dissect/3/detectors"] == summary["layers"]["3"]["detectors"]
    assert "wandb sync" in result.stdout


def test_layers_are_listed_and_a_wrong_layer_name_lists_the_valid_ones(p100_run, tmp_path):
    summary = analyse(compose(["analysis=layers", f"run={p100_run}", "logger=none"], "dissect"), tmp_path)
    assert summary["default_layers"] == ["0", "1", "2", "3"]
    shapes = {r["layer"]: r["shape"] for r in summary["layers"]}
    assert shapes["2"] == [128, 4, 4] and shapes["6"] == [1]  # the head: a logit, not a map
    assert json.loads((tmp_path / "layers.json").read_text())["image_size"] == 32
    cfg = compose(["logger=none", "layers=[layer4]", f"run={p100_run}", f"paths.root_dir={tmp_path}"], "dissect")
    with pytest.raises(ValueError, match=r"no layer 'layer4'.*Valid names .*0 \(32, 16, 16\), .*3 \(256, 2, 2\)"):
        analyse(cfg, tmp_path / "out")


def test_sweep_writes_one_row_per_p_and_layer_and_reuses_dissections(sweep_dir, tmp_path):
    cfg = compose(["analysis=units", f"sweep={sweep_dir}", "logger=none", "layers=[2,3]", "exact_check_images=0",
                  "top_detectors=2", "top_images=2", f"paths.root_dir={tmp_path}"], "dissect")
    summary = analyse(cfg, tmp_path / "out")
    rows = read_csv(tmp_path / "out" / "dissect_sweep.csv")
    assert sorted((float(r["P"]), r["layer"]) for r in rows) == [(50, "2"), (50, "3"), (100, "2"), (100, "3")]
    assert (tmp_path / "out" / "dissect_vs_p.png").stat().st_size > 10_000
    for row in rows:
        per_run = json.loads((Path(row["dissect_dir"]) / "dissect.json").read_text())["layers"][row["layer"]]
        assert int(row["eye_detectors"]) == per_run["by_region"]["eye"]
        assert row["family"] == "eyeglasses"  # no planted grayscale: its grayscale group is the probe's
        assert int(row["grayscale_biased"]) == per_run["biased"]["grayscale"]["biased"]
    totals = read_csv(tmp_path / "out" / "dissect_sweep_totals.csv")
    for total in totals:
        mine = [r for r in rows if r["P"] == total["P"]]
        assert int(total["eye_detectors"]) == sum(int(r["eye_detectors"]) for r in mine)
        assert int(total["units"]) == 128 + 256
    rho = [c for c in summary["spearman"] if c["layer"] == ALL_LAYERS and c["measure"] == "eye_detectors"]
    assert len(rho) == 1 and rho[0]["runs"] == 2 and rho[0]["seed_measure"]

    stamps = {p: p.stat().st_mtime_ns for p in sweep_dir.glob("*/dissect/dissect.json")}
    assert len(stamps) == 2
    analyse(cfg, tmp_path / "again")  # same settings: the dissections are reused, not redone
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
