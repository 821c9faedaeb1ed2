"""Bring your own model: dissect.py's layers, units and regions on a network the user brings (model.file=,
model.class_name=, model.state_dict=) instead of a training run.

A small CNN written to a file in tmp_path is listed, dissected and explained (with the sanity check) on the
session's tiny SynthFaces set, and listed through the Hydra entry point. The known answer runs through the
folder/CSV data path: the planted dark-band detector of test_regions.py, brought as a user file, looks at (and
its one unit detects) the face region whose band is dark in the images, and both move when the band moves.
Every bad input is pinned by its message, and the ones that would cost data work are shown to fail before any.
Folder images dlib places no face on, in a folder without landmark columns, are left out of both analyses by name;
a folder where most of them are no faces stops before any dissection.
"""

from __future__ import annotations

import csv
import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CELEBA_SAMPLE, TINY, compose

from facebias.analyses.driver import analyse, check_run_data_overrides
from facebias.faces.concepts import FACE_PARTS, REGIONS
from facebias.faces.landmarks import LandmarkFallbackWarning, TooManyFailuresError
from facebias.models.user import ModelLoadError, UserModel
from facebias.reporting.files import read_csv

SYNTH = [o for o in TINY if o.startswith("data.synth.")]  # the session's tiny SynthFaces set
SIZE = next(int(o.partition("=")[2]) for o in TINY if o.startswith("data.image_size="))  # 32 px

USER_NET = textwrap.dedent(
    '''
    import torch
    from torch import nn


    class TinyNet(nn.Module):
        """Two conv blocks and a linear head: (n, 3, S, S) -> (n, heads) logits."""

        def __init__(self, width=8, heads=1):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.head = nn.Linear(2 * width, heads)

        def forward(self, x):
            return self.head(self.pool(self.features(x)).flatten(1))


    class Helper:
        pass
    '''
)

# The user file of the known answer: test_regions.py's planted detector, as a user's own file would bring it.
BAND_NET = textwrap.dedent(
    '''
    from test_regions import DarkBandDetector


    class BandNet(DarkBandDetector):
        """How dark each 4x4 cell is (a fixed 1x1 conv): the logit is their mean."""
    '''
)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run faster on one thread


@pytest.fixture
def user_net(tmp_path: Path) -> tuple[Path, Path]:
    """net.py defining TinyNet, and its seeded state_dict saved with torch.save(net.state_dict())."""
    source = tmp_path / "net.py"
    source.write_text(USER_NET)
    namespace: dict = {}
    exec(compile(USER_NET, str(source), "exec"), namespace)
    torch.manual_seed(0)
    weights = tmp_path / "net.pt"
    torch.save(namespace["TinyNet"]().state_dict(), weights)
    return source, weights


def brought(source: Path, weights: Path, class_name: str = "TinyNet") -> list[str]:
    return [f"model.file={source}", f"model.class_name={class_name}", f"model.state_dict={weights}"]


def on_synthfaces(data_dir: Path, tmp_path: Path) -> list[str]:
    return [*SYNTH, f"model.image_size={SIZE}", f"paths.data_dir={data_dir}", f"paths.root_dir={tmp_path}",
            "logger=none", "device=cpu"]


# ------------------------------------------------------------------------------------------- the adapter


def test_the_model_gets_its_own_input_size_and_normalisation():
    net = torch.nn.Conv2d(3, 1, 1)
    model = UserModel(net, ["Male"], image_size=16, mean=[0.5, 0.25, 0.0], std=[0.5, 0.25, 2.0])
    images = torch.randint(0, 256, (3, 32, 32, 3), dtype=torch.uint8)
    gray = torch.tensor([False, True, False])
    x = model.preprocess({"image": images, "gray": gray, "row": torch.arange(3)})["image"]
    assert x.shape == (3, 3, 16, 16) and x.dtype == torch.float32
    shown = images.float().clone()
    shown[1] = (shown[1] * torch.tensor([0.299, 0.587, 0.114])).sum(-1, keepdim=True).round().expand(32, 32, 3)
    expected = torch.nn.functional.interpolate(shown.permute(0, 3, 1, 2) / 255, size=(16, 16), mode="bilinear",
                                               align_corners=False, antialias=True)
    expected = (expected - torch.tensor([0.5, 0.25, 0.0]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.25, 2.0]).view(
        1, 3, 1, 1)
    torch.testing.assert_close(x, expected, atol=2e-3, rtol=0)
    same = model.preprocess({"image": images[:, :16, :16]})["image"]  # already at its size: no resize
    torch.testing.assert_close(same[0, 2], images[0, :16, :16, 2].float() / 255 / 2.0)
    assert model.preprocess({"image": x})["image"] is x  # model input already


def test_the_datamodule_is_built_at_the_models_size_from_the_data_group(user_net, data_dir, tmp_path):
    from facebias.runs import build_datamodule, load_model, locate_user_model

    cfg = compose(["analysis=units", *brought(*user_net), *on_synthfaces(data_dir, tmp_path),
                   "model.mean=[0.5,0.5,0.5]", "model.std=[0.25,0.25,0.25]"], "dissect")
    run = locate_user_model(cfg)
    assert run.targets == ["Male"] and run.run_dir is None and run.family == "user-model"
    assert run.parent()["model_file"] == str(user_net[0]) and run.parent()["checkpoint"] == str(user_net[1])
    datamodule = build_datamodule(run)
    assert datamodule.image_size == SIZE and datamodule.source == "synthfaces" and datamodule.targets == ["Male"]
    assert Path(datamodule.data_dir) == data_dir  # data.data_dir null: paths.data_dir
    batch = datamodule.dataset("test").__getitems__([0, 1])
    x = load_model(run).preprocess(batch)["image"]
    torch.testing.assert_close(x, (batch["image"].permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25)


# ------------------------------------------------------------------------------------------- the analyses


def test_layers_lists_the_user_models_modules_through_dissect_py(user_net, tmp_path):
    from test_evaluate import run_script

    result = run_script("dissect.py", "analysis=layers", *brought(*user_net), f"model.image_size={SIZE}",
                        f"paths.root_dir={tmp_path}", "logger=none")
    (out,) = [p.parent for p in (tmp_path / "outputs" / "dissect").rglob("layers.json")]
    summary = json.loads((out / "layers.json").read_text())
    shapes = {r["layer"]: r["shape"] for r in summary["layers"]}
    assert shapes == {"features": [16, 8, 8], "features.0": [8, 32, 32], "features.1": [8, 32, 32],
                      "features.2": [8, 16, 16], "features.3": [16, 16, 16], "features.4": [16, 16, 16],
                      "features.5": [16, 8, 8], "pool": [16, 1, 1], "head": [1]}
    assert summary["default_layers"] == ["features"] and summary["network"] == "TinyNet"
    assert summary["run_dir"] is None and summary["source"]["model_file"] == str(user_net[0])
    assert "features.3" in result.stdout and "TinyNet from" in result.stdout
    record = json.loads((out / "run.json").read_text())
    assert record["kind"] == "layers" and record["status"] == "finished"
    assert record["parent"]["model_file"] == str(user_net[0]) and record["parent"]["run_dir"] is None
    assert not (tmp_path / "data").exists()  # listing layers reads no data


def test_regions_with_the_sanity_check_on_synthfaces(user_net, data_dir, tmp_path):
    cfg = compose(["analysis=regions", *brought(*user_net), *on_synthfaces(data_dir, tmp_path),
                   "data.protected=Eyeglasses", "max_images=16", "n_bootstrap=20", "top_patches=2",
                   "exp_name=mine"], "dissect")
    summary = analyse(cfg, tmp_path / "out")
    out = tmp_path / "out"
    assert summary["job"] == "explain-regions" and summary["family"] == "user-model" and summary["P"] is None
    assert summary["experiment"] == "mine" and summary["network"] == "TinyNet" and summary["layer"] == "features"
    assert summary["layer_shape"] == [16, 8, 8] and summary["image_size"] == SIZE
    assert summary["head"] == "Male" and summary["protected"] == "Eyeglasses"
    assert summary["selection"]["n_images"] == 16 and summary["selection"]["per_group"] == 8
    assert summary["model"]["class_name"] == "TinyNet" and summary["model"]["heads"] == ["Male"]
    assert [r["region"] for r in summary["regions"]] == list(REGIONS)
    assert all(r["all"] is None or 0.0 <= r["all"] <= 1.0 for r in summary["regions"])
    sanity = summary["sanity"]
    assert sanity is not None and set(sanity["random_scores"]) == set(REGIONS)
    assert sanity["rho"] is None or -1.0 <= sanity["rho"] <= 1.0
    for name in ("regions.json", "region_scores.csv", "image_scores.csv", "report.html", "plots/heatmaps.png"):
        assert (out / name).is_file(), name
    assert "Sanity check: randomised weights" in (out / "report.html").read_text()
    record = json.loads((out / "run.json").read_text())
    assert record["kind"] == "regions" and record["status"] == "finished"
    assert record["parent"]["class_name"] == "TinyNet" and record["data"]["source"] == "synthfaces"
    assert record["wandb"] == {"group": "mine", "name": "explain mine"}


def test_units_on_synthfaces(user_net, data_dir, tmp_path):
    cfg = compose(["analysis=units", *brought(*user_net), *on_synthfaces(data_dir, tmp_path), "max_images=16",
                   "layers=[features.2,features]", "exact_check_images=4", "top_detectors=2", "top_images=2"],
                  "dissect")
    summary = analyse(cfg, tmp_path / "out")
    assert summary["job"] == "dissect" and summary["network"] == "TinyNet" and summary["family"] == "user-model"
    assert set(summary["layers"]) == {"features.2", "features"}
    assert summary["layers"]["features.2"]["units"] == 8 and summary["layers"]["features"]["shape"] == [16, 8, 8]
    assert summary["dictionary"]["n_images"] == 16 and summary["dictionary_quality"]["images"] == 4
    rows = read_csv(tmp_path / "out" / "units.csv")
    assert len(rows) == 8 + 16
    assert json.loads((tmp_path / "out" / "run.json").read_text())["kind"] == "dissect"


# ------------------------------------------------------------------------------------------- folder data, known answer


def band_folder(root: Path, dark: str, protected: dict[int, str] | None = None, n: int = 32) -> tuple[Path, Path]:
    """An annotated folder of 128x128 faces (landmarks in the CSV) whose `dark` region is dark and the rest
    light, with mild noise; Male alternates, `group` is balanced within each Male value; 4 train, 4 val, the rest
    test. `protected` replaces the group value of some rows (to make it non-binary)."""
    from PIL import Image

    from facebias.data.celeba import LANDMARK_COLUMNS
    from facebias.explain.statistics import region_masks
    from facebias.faces.dictionary import face_dictionary, random_landmarks

    aligned = random_landmarks(n, seed=3)
    dictionary = face_dictionary(aligned, mask_size=128, concepts=FACE_PARTS)
    masks = region_masks(dictionary.masks, dictionary.regions, REGIONS)
    band = masks[:, REGIONS.index(dark)].numpy()
    rng = np.random.default_rng(0)
    images = root / "images"
    images.mkdir(parents=True)
    source = aligned - np.array([25.0, 57.0])  # the 128x128 image is the reference crop: x = aligned x - 25
    rows = []
    for i in range(n):
        pixels = np.where(band[i][..., None], rng.uniform(0, 50, (128, 128, 3)), rng.uniform(200, 255, (128, 128, 3)))
        Image.fromarray(pixels.round().astype(np.uint8)).save(images / f"{i:03d}.png")
        split = "train" if i < 4 else "val" if i < 8 else "test"
        rows.append({"path": f"images/{i:03d}.png", "Male": i % 2, "group": (protected or {}).get(i, (i // 2) % 2),
                     "split": split, **dict(zip(LANDMARK_COLUMNS, source[i].reshape(-1).round(2), strict=True))})
    labels = root / "labels.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root, labels


@pytest.fixture
def band_net(tmp_path: Path) -> tuple[Path, Path]:
    from test_regions import DarkBandDetector

    source = tmp_path / "band_net.py"
    source.write_text(BAND_NET)
    weights = tmp_path / "band_net.pt"
    torch.save(DarkBandDetector().state_dict(), weights)
    return source, weights


def on_folder(root: Path, labels: Path, tmp_path: Path) -> list[str]:
    """The folder/CSV data path, as train.py takes it; the band detector reads RGB in [0, 1] (mean 0, std 1)."""
    return ["data=folder", f"data.root={root}", f"data.folder.csv_path={labels}", "data.folder.split_column=split",
            "data.protected=group", "model.image_size=64", "model.mean=[0,0,0]", "model.std=[1,1,1]",
            f"paths.data_dir={tmp_path / 'data'}", f"paths.root_dir={tmp_path}", "logger=none", "device=cpu"]


@pytest.mark.parametrize("planted", ["eye", "mouth"])
def test_a_brought_band_detector_looks_at_and_detects_its_region_on_folder_data(planted, band_net, tmp_path):
    root, labels = band_folder(tmp_path / "faces", planted)
    # the band images are no faces: dlib's score on them is noise (it "places" 11 of 12 dark-eye images and 1 of 12
    # dark-mouth ones), and a source where most images get no 68 points stops; the known answer is drawn with the
    # five-point dictionary that planted the bands
    common = [*brought(*band_net, class_name="BandNet"), *on_folder(root, labels, tmp_path), "dictionary.landmarks=5"]
    explained = analyse(compose(["analysis=regions", *common, "n_bootstrap=50", "top_patches=0"], "dissect"),
                        tmp_path / "regions")
    assert explained["layer"] == "features" and explained["dictionary"]["crop"] == "none"
    assert explained["selection"]["n_images"] == 12 and explained["protected"] == "group"
    scores = {r["region"]: r["all"] for r in explained["regions"]}
    ranked = sorted(scores, key=lambda r: -1.0 if scores[r] is None else scores[r], reverse=True)
    assert ranked[0] == planted, scores
    assert scores[planted] > 0.5 and scores[planted] > 1.5 * scores[ranked[1]], scores
    assert explained["sanity"] is not None

    # the one unit of the band detector: a detector of a concept of the planted region (NetDissect's pairing)
    dissected = analyse(compose(["analysis=units", *common, "quantile=0.05", "top_detectors=1", "top_images=2"],
                                "dissect"), tmp_path / "units")
    layer = dissected["layers"]["features"]
    assert layer["units"] == 1 and layer["detectors"] == 1, layer
    assert layer["by_region"][planted] == 1, layer["by_region"]
    (unit,) = read_csv(tmp_path / "units" / "units.csv")
    assert float(unit["iou"]) > 0.2, unit


def celeba_folder(root: Path, test_faces: int, grey: int) -> tuple[Path, Path]:
    """A plain folder (no landmark columns) of the CelebA sample's real aligned faces and ``grey`` flat grey images,
    which are no faces (dlib's HOG score at the mean-face box: -2.6, its threshold -1.25; all ten real faces are
    placed with the folder's crop=none): two faces for train, two for val, ``test_faces`` faces then the grey
    images for test, with Male=1 there and ``group`` alternating 0/1 (the grey ones 0, 1, ...)."""
    from PIL import Image

    images = root / "images"
    images.mkdir(parents=True)
    names = sorted(p.name for p in (CELEBA_SAMPLE / "img_align_celeba").glob("*.jpg"))[: 4 + test_faces]
    rows = []
    for i, name in enumerate(names):
        shutil.copy(CELEBA_SAMPLE / "img_align_celeba" / name, images / name)
        rows.append((f"images/{name}", "train" if i < 2 else "val" if i < 4 else "test"))
    for i in range(grey):
        Image.new("RGB", (178, 218), (128, 128, 128)).save(images / f"grey{i}.png")
        rows.append((f"images/grey{i}.png", "test"))
    lines, k = ["path,Male,group,split"], 0
    for i, (path, split) in enumerate(rows):
        male, group = (1, k % 2) if split == "test" else (i % 2, i % 2)
        k += split == "test"
        lines.append(f"{path},{male},{group},{split}")
    labels = root / "labels.csv"
    labels.write_text("\n".join(lines) + "\n")
    return root, labels


def test_folder_images_without_a_face_are_left_out_by_name(user_net, tmp_path):
    pytest.importorskip("dlib")
    root, labels = celeba_folder(tmp_path / "faces", test_faces=6, grey=2)
    common = [*brought(*user_net), *on_folder(root, labels, tmp_path)]
    named = (r"2 of 8 folder images are left out of the Face Dictionary and of the analysis .*: images/grey0\.png: "
             r"dlib cannot place a face: .*; images/grey1\.png: dlib cannot place a face")
    grey = ["images/grey0.png", "images/grey1.png"]
    with pytest.warns(LandmarkFallbackWarning, match=named):
        dissected = analyse(compose(["analysis=units", *common, "top_detectors=1", "top_images=1"], "dissect"),
                            tmp_path / "units")
    d = dissected["dictionary"]
    assert d["left_out"]["count"] == 2 and d["left_out"]["files"] == grey
    assert all("dlib cannot place a face" in d["left_out"]["reasons"][name] for name in grey)
    assert d["n_images"] == 6 and d["landmarks"]["faces"] == 6 and d["landmarks"]["with_68"] == 6
    assert d["landmarks"]["fallback_5"] == 0 and sum(d["cells"].values()) == 6
    assert json.loads((tmp_path / "units" / "dissect.json").read_text())["dictionary"]["left_out"] == d["left_out"]
    report = (tmp_path / "units" / "report.html").read_text()
    assert "Left out: 2 images" in report and "images/grey0.png, images/grey1.png" in report

    with pytest.warns(LandmarkFallbackWarning, match=named):
        explained = analyse(compose(["analysis=regions", *common, "n_bootstrap=20", "top_patches=0"], "dissect"),
                            tmp_path / "regions")
    assert explained["dictionary"]["left_out"]["files"] == grey and explained["dictionary"]["landmarks"]["faces"] == 6
    assert explained["selection"]["n_images"] == 6 and explained["selection"]["per_group"] == 4
    assert "2 faces dlib could not place left out" in explained["selection"]["rule"]
    scored = read_csv(tmp_path / "regions" / "image_scores.csv")
    assert [int(r["row"]) for r in scored] == [4, 5, 6, 7, 8, 9]  # the grey images are rows 10 and 11
    assert [int(r["protected"]) for r in scored] == [0, 1, 0, 1, 0, 1]
    assert {r["region"]: r["n"] for r in explained["regions"]}["eye"] == 6
    report = (tmp_path / "regions" / "report.html").read_text()
    assert "Left out: 2" in report and "images/grey0.png, images/grey1.png" in report


def test_a_folder_of_mostly_faceless_images_stops_before_the_dissection(user_net, tmp_path):
    pytest.importorskip("dlib")
    root, labels = celeba_folder(tmp_path / "faces", test_faces=1, grey=2)
    cfg = compose(["analysis=units", *brought(*user_net), *on_folder(root, labels, tmp_path)], "dissect")
    with pytest.raises(TooManyFailuresError, match=r"^dlib placed no usable 68-point face in 2 of 3 folder images in "
                                                   r".*faces \(more than 50% of those analysed\), so the 68-point Face "
                                                   r"Dictionary stops: images/grey0\.png: dlib cannot place a face: "
                                                   r"a face score of -2\.\d+, below -1\.25; images/grey1\.png: .*\. "
                                                   r"Check that these are aligned face images \(one upright face each, "
                                                   r"centred as in CelebA's aligned crops\) and that data\.crop is "
                                                   r"right for them \(it is 'none'; celeba: .*; or give the five "
                                                   r"landmarks per face .* and use dictionary\.landmarks=5$"):
        analyse(cfg, tmp_path / "out")
    assert not (tmp_path / "out" / "dissect.json").exists() and not (tmp_path / "out" / "units.csv").exists()


# ------------------------------------------------------------------------------------------- bad input


def test_a_syntax_error_shows_the_line(user_net, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\n\nclass TinyNet(torch.nn.Module:\n    pass\n")
    cfg = compose(["analysis=layers", *brought(broken, user_net[1]), "logger=none"], "dissect")
    with pytest.raises(ModelLoadError, match=r"model.file=.*broken.py has a syntax error at line 3: .*\n"
                                             r"    class TinyNet\(torch.nn.Module:\n +\^"):
        analyse(cfg, tmp_path / "out")


def test_a_missing_class_lists_the_classes_of_the_file(user_net, tmp_path):
    cfg = compose(["analysis=layers", *brought(*user_net, class_name="Tinynet"), "logger=none"], "dissect")
    with pytest.raises(ModelLoadError, match=r"net.py defines no class 'Tinynet'; classes it defines: "
                                             r"\['Helper', 'TinyNet'\]; set model.class_name to one of them"):
        analyse(cfg, tmp_path / "out")
    cfg = compose(["analysis=layers", *brought(*user_net, class_name="Helper"), "logger=none"], "dissect")
    with pytest.raises(ModelLoadError, match=r"Helper from .*net.py is a Helper, not a torch.nn.Module"):
        analyse(cfg, tmp_path / "out")


def test_a_state_dict_that_does_not_fit_lists_the_keys(user_net, tmp_path):
    source, weights = user_net
    state = torch.load(weights, weights_only=True)
    del state["head.bias"]
    state["extra.weight"] = torch.zeros(1)
    odd = tmp_path / "odd.pt"
    torch.save(state, odd)
    cfg = compose(["analysis=layers", *brought(source, odd), "logger=none"], "dissect")
    with pytest.raises(ModelLoadError, match=r"model.state_dict=.*odd.pt does not fit TinyNet from .*net.py \(built "
                                             r"with model.kwargs=\{\}\): missing keys \['head.bias'\]; unexpected keys "
                                             r"\['extra.weight'\]; save the weights"):
        analyse(cfg, tmp_path / "out")
    cfg = compose(["analysis=layers", *brought(source, weights), "logger=none", "model.kwargs={width: 4}"],
                  "dissect")
    with pytest.raises(ModelLoadError, match=r"does not fit TinyNet .*size mismatch for features.0.weight"):
        analyse(cfg, tmp_path / "out")
    cfg = compose(["analysis=layers", *brought(source, weights), "logger=none", "model.kwargs={depth: 4}"],
                  "dissect")
    with pytest.raises(ModelLoadError, match=r"TinyNet\(\*\*\{'depth': 4\}\) from .*net.py failed: TypeError.*"
                                             r"pass the constructor's arguments as model.kwargs"):
        analyse(cfg, tmp_path / "out")
    pickled = tmp_path / "pickled.pt"
    torch.save({"net": torch.nn.Linear(2, 2)}, pickled)  # a whole module: refused by weights_only=True
    cfg = compose(["analysis=layers", *brought(source, pickled), "logger=none"], "dissect")
    with pytest.raises(ModelLoadError, match=r"model.state_dict=.*pickled.pt: cannot read it with "
                                             r"torch.load\(weights_only=True\)"):
        analyse(cfg, tmp_path / "out")


def offline_options(user_net, tmp_path) -> tuple[Path, list[str]]:
    """A data dir that must never be created, and the options of the brought model with it."""
    nodata = tmp_path / "nodata"
    return nodata, [*brought(*user_net), "logger=none", f"paths.data_dir={nodata}", f"model.image_size={SIZE}"]


def test_heads_and_target_class_out_of_range(user_net, tmp_path):
    nodata, base = offline_options(user_net, tmp_path)
    with pytest.raises(ValueError, match=r"head='Smiling' is out of range: the model's heads \(model.heads\) are "
                                         r"\['Male'\]; choose one of them"):
        analyse(compose(["analysis=regions", *base, "head=Smiling"], "dissect"), tmp_path / "out")
    with pytest.raises(ValueError, match=r"target_class=2 is out of range: the heads are binary"):
        analyse(compose(["analysis=regions", *base, "target_class=2"], "dissect"), tmp_path / "out")
    with pytest.raises(ModelLoadError, match=r"model.heads=\['Male', 'Smiling'\] names 2 output column\(s\), but "
                                             r"TinyNet returns shape \(2, 1\)"):
        analyse(compose(["analysis=regions", *base, "model.heads=[Male,Smiling]"], "dissect"), tmp_path / "out")
    with pytest.raises(ModelLoadError, match=r"TinyNet.forward failed on a batch of shape \(2, 3, 4, 4\)|"
                                             r"model.image_size=4: give the model's input size"):
        analyse(compose(["analysis=layers", *base, "model.image_size=4"], "dissect"), tmp_path / "out")
    assert not nodata.exists()  # all of it before any data is read or generated


def test_a_layer_that_is_not_a_feature_map(user_net, tmp_path):
    nodata, base = offline_options(user_net, tmp_path)
    with pytest.raises(ValueError, match=r"layer=head: head outputs \(1, 1\), not a \(batch, units, h, w\) feature "
                                         r"map; choose among: features \(16, 8, 8\), features.0 \(8, 32, 32\)"):
        analyse(compose(["analysis=regions", *base, "layer=head"], "dissect"), tmp_path / "out")
    with pytest.raises(ValueError, match=r"layers=\['head'\]: head outputs \(1, 1\), not a \(batch, units, h, w\)"):
        analyse(compose(["analysis=units", *base, "layers=[head]"], "dissect"), tmp_path / "out")
    with pytest.raises(ValueError, match=r"TinyNet has no layer 'layer4'. Valid names \(feature maps, as units x h x "
                                         r"w at 32 px\): features \(16, 8, 8\)"):
        analyse(compose(["analysis=units", *base, "layers=[layer4]"], "dissect"), tmp_path / "out")
    assert not nodata.exists()


def test_a_protected_column_that_is_not_binary(band_net, tmp_path):
    root, labels = band_folder(tmp_path / "faces", "eye", protected={9: "2", 13: "unknown"})
    cfg = compose(["analysis=regions", *brought(*band_net, class_name="BandNet"), *on_folder(root, labels, tmp_path)],
                  "dissect")
    with pytest.raises(ValueError, match=r"data.protected='group': column 'group' of .*labels.csv is not binary; "
                                         r"values found: '0', '1', '2', 'unknown'. Code it as 0/1"):
        analyse(cfg, tmp_path / "out")
    assert not (tmp_path / "data").exists()  # before the image cache is built


def test_what_to_analyse_run_or_model_not_both_nor_neither(user_net, tmp_path):
    with pytest.raises(ValueError, match=r"give either run=/ckpt= \(a facebias training run\) or model.file= \(a "
                                         r"model you bring\), not both"):
        analyse(compose(["analysis=layers", *brought(*user_net), f"run={tmp_path}", "logger=none"], "dissect"),
                tmp_path / "out")
    with pytest.raises(ValueError, match=r"name what to analyse: run=<training run dir>.*; or model.file=<net.py> "
                                         r"model.class_name=<Class> model.state_dict=<weights.pt>"):
        analyse(compose(["analysis=regions", "logger=none"], "dissect"), tmp_path / "out")
    with pytest.raises(ValueError, match=r"give either sweep=<multirun dir> or run=/ckpt= or model.file=, not"):
        analyse(compose(["analysis=units", *brought(*user_net), f"sweep={tmp_path}", "logger=none"], "dissect"),
                tmp_path / "out")
    with pytest.raises(ValueError, match=r"analysis=fairness needs a facebias training run \(run=<dir>\); a "
                                         r"model you bring \(model.file=\) works with analysis=layers, analysis=units, "
                                         r"analysis=regions and analysis=counterfactual"):
        analyse(compose(["analysis=fairness", *brought(*user_net), "logger=none"], "dissect"), tmp_path / "out")
    with pytest.raises(ModelLoadError, match=r"model.state_dict is not set: a model you bring needs"):
        analyse(compose(["analysis=layers", f"model.file={user_net[0]}", "model.class_name=TinyNet",
                         "logger=none"], "dissect"), tmp_path / "out")
    with pytest.raises(FileNotFoundError, match=r"model.file=nowhere.py: no such file or directory"):
        analyse(compose(["analysis=layers", *brought(Path("nowhere.py"), user_net[1]), "logger=none"], "dissect"),
                tmp_path / "out")


def test_data_options_are_checked_against_the_model(user_net, tmp_path):
    base = [*brought(*user_net), "logger=none"]
    with pytest.raises(ValueError, match=r"data=folder needs data.folder.csv_path, data.root: e.g. data.root=/images"):
        analyse(compose(["analysis=units", *base, "data=folder"], "dissect"), tmp_path / "out")
    with pytest.raises(ValueError, match=r"data.targets=\['Smiling'\] differs from model.heads=\['Male'\]"):
        analyse(compose(["analysis=units", *base, "data.targets=[Smiling]"], "dissect"), tmp_path / "out")
    with pytest.raises(ValueError, match=r"data.image_size=128 differs from model.image_size=64"):
        analyse(compose(["analysis=units", *base, "data.image_size=128"], "dissect"), tmp_path / "out")
    with pytest.raises(ModelLoadError, match=r"model.std=\[1, 0, 1\]: every channel's std must be > 0"):
        analyse(compose(["analysis=units", *base, "model.std=[1,0,1]"], "dissect"), tmp_path / "out")
    # with run=, the data group's options would be ignored: they fail by name (data.protected etc. may change)
    with pytest.raises(ValueError, match=r"^data=folder, data.root=/x: with run= \(or sweep=\) a training run"):
        check_run_data_overrides(["data=folder", "data.root=/x", "data.data_dir=/d", "data.protected=Male", "seed=1"])
    check_run_data_overrides(["data.data_dir=/d", "data.protected=Male", "+data.num_workers=2", "layer=3"])
