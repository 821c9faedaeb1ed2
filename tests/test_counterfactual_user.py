"""analysis=counterfactual on a model the user brings (model.file=), including the seed's saliency setting.

Kulynych's seed raised the spatial maximum of a saliency map that a black-box model outputs. Here the user's
"saliency" model, written to a file in tmp_path, is test_regions.py's planted dark-band detector turned into a
map that is bright exactly where the bridge of a pair of eyeglasses is drawn (and 0 on a face without them).
Raising counterfactual.objective=map_max must add true Eyeglasses (read from z on SynthFaces) in clearly more
searches than the null, and the report must mark it significant; a constant map (map_mean) moves nothing and
makes nothing significant. The generator is the SynthFaces renderer of the data group's set (a tiny one here).
Shape mismatches and bad options are pinned by their messages, and fail before any data is read or generated.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CELEBA_SAMPLE, compose

from facebias.analyses.driver import analyse
from facebias.counterfactual.search import Objective, SearchOptions, check_objective_output, search
from facebias.generators import SynthFacesGenerator
from facebias.models.user import load_user_model
from facebias.reporting.files import read_csv

SIZE = 64  # the saliency model's input: 4x4 cells of 16x16, the eyes on row 6

# The user's file: the planted detector of test_regions.py, as a user's own file would bring it.
SALIENCY_NET = textwrap.dedent(
    '''
    import torch
    from torch import nn
    from test_regions import DarkBandDetector


    class BridgeSaliency(DarkBandDetector):
        """A saliency map (n, 1, S/4, S/4), bright exactly where the bridge of eyeglasses is drawn.

        DarkBandDetector's features give the darkness of each 4x4 cell; a cell darker than the cells above and
        below it (Weber contrast) is a dark horizontal line on lighter skin. Kept between the eyes (the two centre
        cells of the eye row, where a face without glasses shows skin; elsewhere eyes, brows and hair are dark
        lines too) and saturated: 0 on a face without glasses, 1 on the bridge of a face with them."""

        def forward(self, x):
            light = 1 - self.features(x)
            around = 0.5 * (torch.roll(light, 1, 2) + torch.roll(light, -1, 2))
            contrast = (around - light) / around.clamp_min(0.05)
            keep = torch.zeros_like(contrast)
            row, mid = 6 * contrast.shape[2] // 16, contrast.shape[3] // 2
            keep[:, :, row, mid - 1:mid + 1] = 1
            return ((contrast - 0.04) / 0.03).clamp(0, 1) * keep


    class Band(DarkBandDetector):
        """The detector as it is: (n, 1) logits, no map."""


    class Flat(nn.Module):
        """A constant map (n, S/4, S/4): every face equally salient everywhere."""

        def __init__(self):
            super().__init__()
            self.level = nn.Parameter(torch.ones(1))

        def forward(self, x):
            return self.level * torch.ones(x.shape[0], x.shape[2] // 4, x.shape[3] // 4)
    '''
)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run faster on one thread


@pytest.fixture(scope="module")
def user_files(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """net.py and the state_dict of each of its classes (the band detector's weights are fixed in code)."""
    from test_regions import DarkBandDetector

    root = tmp_path_factory.mktemp("saliency_net")
    source = root / "net.py"
    source.write_text(SALIENCY_NET)
    band, flat = root / "band.pt", root / "flat.pt"
    torch.save(DarkBandDetector().state_dict(), band)
    torch.save({"level": torch.tensor([0.5])}, flat)
    return {"BridgeSaliency": (source, band), "Band": (source, band), "Flat": (source, flat)}


def brought(files: dict, class_name: str) -> list[str]:
    source, weights = files[class_name]
    return [f"model.file={source}", f"model.class_name={class_name}", f"model.state_dict={weights}",
            f"model.image_size={SIZE}", "model.mean=[0,0,0]", "model.std=[1,1,1]", "logger=none", "device=cpu"]


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> list[str]:
    """A 60-face SynthFaces set (data.synth.*, generated in this process on first use): the generator's source."""
    data_dir = tmp_path_factory.mktemp("tiny_synthfaces")
    return [f"paths.data_dir={data_dir}", "data.synth.n_faces=60", "+data.synth.workers=0", "data.progress=false"]


SEARCH = ["counterfactual.starts=64", "counterfactual.k=6", "counterfactual.steps=5", "counterfactual.sigma=0.7",
          "counterfactual.record_every=5", "counterfactual.strips=2"]


# ------------------------------------------------------------------------------------------- the known answer

@pytest.fixture(scope="module")
def salient(user_files, tiny_set, tmp_path_factory):
    root = tmp_path_factory.mktemp("counterfactual_saliency")
    cfg = compose(["analysis=counterfactual", *brought(user_files, "BridgeSaliency"), *tiny_set,
                   f"paths.root_dir={root}", "counterfactual.objective=map_max", *SEARCH], "dissect")
    return root / "out", analyse(cfg, root / "out")


def test_raising_the_saliency_maximum_adds_the_eyeglasses_it_lights_up(salient, tiny_set):
    out, summary = salient
    assert summary["objective"] == {"head": None, "kind": "map_max", "direction": "raise", "label": "map max"}
    assert summary["family"] == "user-model" and summary["source"]["class_name"] == "BridgeSaliency"
    generator = summary["generator"]
    assert generator["class"] == "SynthFacesGenerator" and generator["image_size"] == SIZE
    assert generator["model_input_size"] == SIZE and not generator["resized"]
    data_dir = tiny_set[0].partition("=")[2]
    assert Path(generator["root"]).parent == Path(data_dir)  # the data group's set: its latent model
    assert summary["notes"] == []

    rows = {(r["name"], r["source"], r["change"]): r for r in summary["codes"]}
    added = rows[("Eyeglasses", "true", "added")]
    assert added["significant"] and added["verdict"] == "prefers", added
    assert added["search_rate"] >= 0.4 and added["search_rate"] >= 3 * added["null_rate"], added
    assert rows[("Eyeglasses", "true", "removed")]["search_count"] == 0  # never removed: the map would go dark
    significant = {key for key, row in rows.items() if row["significant"]}
    assert significant == {("Eyeglasses", "true", "added")}, significant
    assert any(line.startswith("in ") and "Eyeglasses (true, from z) was added" in line for line in summary["preferred"])
    # a user model codes nothing itself (no coders given): true attributes, traits and image statistics only
    assert {r["source"] for r in summary["codes"]} == {"true", "trait", "image"} and summary["agreement"] == []

    # every recorded score is the map's maximum of the rendered face, through the user's own network
    tracks, faces = np.load(out / "trajectories.npz"), np.load(out / "images.npz")
    scores = tracks["search_scores"]
    assert np.all(np.diff(scores, axis=1) >= 0) and np.all((scores >= 0) & (scores <= 1))
    model = load_user_model(*_files(summary), ["Male"], SIZE, [0, 0, 0], [1, 1, 1], check=False)
    with torch.no_grad():
        x = model.preprocess({"image": torch.from_numpy(faces["search"][:, -1])})["image"]
        maps = model(x)
    assert maps.shape == (64, 1, 16, 16)
    np.testing.assert_allclose(maps.flatten(1).amax(1).double().numpy(), scores[:, -1], atol=1e-6)
    truth = SynthFacesGenerator(image_size=SIZE).true_attributes(tracks["search_latents"][:, -1])["Eyeglasses"]
    assert np.all(scores[truth, -1] == 1.0) and np.all(scores[~truth, -1] == 0.0)  # bright exactly with glasses

    codes = read_csv(out / "codes.csv")
    (row,) = [r for r in codes if r["measure"] == "Eyeglasses (true, from z)" and r["change"] == "added"]
    assert row["significant"] in ("True", "true", "1") and row["verdict"] == "prefers"
    html = (out / "report.html").read_text()
    assert "BridgeSaliency" in html and "spatial\nmaximum of the map" in html and "a model you brought" in html
    assert "<b>prefers</b>: in " in html and "map max" in html
    record = json.loads((out / "run.json").read_text())
    assert record["kind"] == "counterfactual" and record["status"] == "finished"
    assert record["parent"]["class_name"] == "BridgeSaliency" and record["parent"]["run_dir"] is None
    print(f"\nmap_max: Eyeglasses added in {added['search_count']}/{added['search_n']} searches, null "
          f"{added['null_count']}/{added['null_n']}, Holm p = {added['p_adjusted']:.2g}; "
          f"{summary['search']['evaluations']} candidates in {summary['search']['seconds']:.1f} s")


def _files(summary) -> tuple[str, str, str]:
    return summary["source"]["model_file"], summary["source"]["class_name"], summary["source"]["checkpoint"]


def test_a_constant_map_moves_nothing_and_finds_nothing(user_files, tmp_path):
    cfg = compose(["analysis=counterfactual", *brought(user_files, "Flat"), "data=celeba",
                   f"data.root={CELEBA_SAMPLE}", f"paths.data_dir={tmp_path / 'nodata'}", f"paths.root_dir={tmp_path}",
                   "counterfactual.objective=map_mean", "counterfactual.starts=16", "counterfactual.k=4",
                   "counterfactual.steps=3", "counterfactual.strips=0"], "dissect")
    summary = analyse(cfg, tmp_path / "out")
    assert summary["objective"]["label"] == "map mean" and summary["search"]["moves"] == 0
    assert summary["null"]["moves"] == 0
    assert not any(r["significant"] for r in summary["codes"]) and summary["preferred"] == []
    scores = np.load(tmp_path / "out" / "trajectories.npz")["search_scores"]
    assert np.all(scores == 0.5)  # the map's mean: the constant itself
    # not SynthFaces data: the renderer's default latent model, said in a note; nothing of the data was read
    assert summary["generator"].get("root") is None
    assert summary["notes"] == ["the model's data (data=celeba) is not SynthFaces: the generator is the SynthFaces "
                                "renderer with its default latent model"]
    assert not (tmp_path / "nodata").exists()


def test_all_starts_candidates_are_scored_in_one_forward_pass_per_step(user_files):
    source, weights = user_files["BridgeSaliency"]
    model = load_user_model(source, "BridgeSaliency", weights, ["Male"], SIZE, [0, 0, 0], [1, 1, 1], check=False)
    batches = []
    model.net.register_forward_hook(lambda module, args, output: batches.append(len(args[0])))
    generator = SynthFacesGenerator(image_size=SIZE)
    objective = Objective(generator, model, None, None, "map_max")
    search(objective, generator.sample(3, 0), SearchOptions(k=4, sigma=0.5, steps=2, budget=None), progress_every=0)
    assert batches == [3, 12, 12] and objective.evaluations == 27
    # the reductions, on a known map, for both map shapes
    output = torch.tensor([[[0.0, 2.0], [1.0, 1.0]], [[-1.0, -3.0], [0.0, -4.0]]])
    assert Objective(generator, model, None, None, "map_max").reduce(output).tolist() == [2.0, 0.0]
    assert Objective(generator, model, None, None, "map_mean").reduce(output[:, None]).tolist() == [1.0, -2.0]


# ------------------------------------------------------------------------------------------------ bad input

def test_an_output_that_does_not_fit_the_objective_fails_before_any_data(user_files, tmp_path):
    nodata = tmp_path / "nodata"
    base = [f"paths.data_dir={nodata}", f"paths.root_dir={tmp_path}"]

    def run(class_name: str, *overrides: str):
        cfg = compose(["analysis=counterfactual", *brought(user_files, class_name), *base, *overrides], "dissect")
        return analyse(cfg, tmp_path / "out")

    with pytest.raises(ValueError, match=r"counterfactual.objective=map_max reduces a map the model outputs, \(batch, "
                                         r"H, W\) or \(batch, 1, H, W\), to its spatial maximum; Band from .*net.py "
                                         r"returns shape \(2, 1\) for a probe batch of 2 at 64 px \(logits: use logit "
                                         r"or probability of a head\)"):
        run("Band", "counterfactual.objective=map_max")
    with pytest.raises(ValueError, match=r"counterfactual.objective=logit reads one head of \(2, 1\) = \(batch, "
                                         r"len\(model.heads\)\) logits, heads \['Male'\]; BridgeSaliency from .*net.py "
                                         r"returns shape \(2, 1, 16, 16\) for a probe batch of 2 at 64 px; a model "
                                         r"that outputs a map \(e.g. a saliency map\) needs "
                                         r"counterfactual.objective=map_max or map_mean"):
        run("BridgeSaliency")  # the default objective: a head's logit
    with pytest.raises(ValueError, match=r"counterfactual.objective=probability reads one head of \(2, 2\) .*heads "
                                         r"\['Male', 'Smiling'\]; Band from .*returns shape \(2, 1\)"):
        run("Band", "counterfactual.objective=probability", "model.heads=[Male,Smiling]")
    with pytest.raises(ValueError, match=r"counterfactual.head=Smiling is not among model.heads=\['Male'\]: output "
                                         r"column i of Band from .*net.py is model.heads\[i\]; choose one of them"):
        run("Band", "counterfactual.head=Smiling")
    assert not nodata.exists() and not (tmp_path / "out" / "codes.csv").exists()


def test_bad_objective_options_are_refused_by_name(user_files, tmp_path):
    base = [f"paths.data_dir={tmp_path / 'nodata'}", f"paths.root_dir={tmp_path}"]
    with pytest.raises(ValueError, match=r"counterfactual.objective='saliency': use one of logit, probability, "
                                         r"map_max, map_mean"):
        analyse(compose(["analysis=counterfactual", *brought(user_files, "Flat"), *base,
                         "counterfactual.objective=saliency"], "dissect"), tmp_path / "out")
    with pytest.raises(ValueError, match=r"counterfactual.head=Male: counterfactual.objective=map_mean reduces the "
                                         r"whole map the model outputs, it reads no head; leave counterfactual.head="
                                         r"null"):
        analyse(compose(["analysis=counterfactual", *brought(user_files, "Flat"), *base,
                         "counterfactual.objective=map_mean", "counterfactual.head=Male"], "dissect"), tmp_path / "out")
    # the probe alone: a map of another shape, a tensor of the wrong batch
    net = torch.nn.Conv2d(3, 2, 1)  # (n, 2, H, W): two channels, not one map
    with pytest.raises(ValueError, match=r"objective=map_max reduces a map .* returns shape \(2, 2, 8, 8\)"):
        check_objective_output(net, "map_max", 8, None, owner="the conv")
    assert check_objective_output(torch.nn.Conv2d(3, 1, 1), "map_mean", 8, None) == (2, 1, 8, 8)
    assert not (tmp_path / "nodata").exists()
