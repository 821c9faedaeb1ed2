"""analysis=counterfactual: black-box search in a generator's latent space, coded and tested against a null.

Known answers without a network (the objective is a function of z, the coding is SynthFaces' exact ground
truth): a linear objective along one attribute's half-space normal makes random search add that attribute
(lowered: remove it) and the coding finds it, alone, significant against the null; a constant objective
moves nothing and an objective of pure noise (selection without preference) finds nothing significant.
End to end on the shared tiny P=100 run: dissect.py writes every file, the report and the W&B run, and the
recorded scores are the classifier's own logits.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose
from test_evaluate import run_script, shared_sweep
from wandb_records import find_runs, read_run

from facebias.analyses.driver import analyse, build_analysis
from facebias.counterfactual import coding, stats
from facebias.counterfactual.report import caption, record_steps
from facebias.counterfactual.search import SearchOptions, minimum_budget, null_walks, search
from facebias.generators import SynthFacesGenerator
from facebias.reporting.files import read_csv
from facebias.runs import find_runs as find_run_dirs

GENERATOR = SynthFacesGenerator(image_size=32)
OPTIONS = SearchOptions(k=8, sigma=0.1, steps=30, budget=4.0, seed=0)


class Counted:
    """An objective of z that records the size of every call."""

    def __init__(self, function):
        self.function, self.calls = function, []

    def __call__(self, z: np.ndarray) -> np.ndarray:
        self.calls.append(len(z))
        return self.function(z)


def coded(objective, starts: int = 48, options: SearchOptions = OPTIONS, sign: float = 1.0):
    z0 = GENERATOR.sample(starts, 0)
    walks = search(objective, z0, options, sign=sign, progress_every=0)
    null = null_walks(walks, options.budget, options.seed)
    measures = coding.true_measures(GENERATOR, (walks.start, walks.end), (null.start, null.end))
    rows = stats.compare(coding.aggregate(measures, 0.25), 0.05, "holm")
    return walks, null, {(r["name"], r["change"]): r for r in rows}


def significant(rows: dict) -> set:
    return {key for key, row in rows.items() if row["significant"]}


# ------------------------------------------------------------------------------------------- known answers

def test_a_linear_objective_along_a_half_space_normal_adds_that_attribute_and_only_it():
    w, _ = GENERATOR.attribute_normal("Eyeglasses")
    objective = Counted(lambda z: z.astype(np.float64) @ w)
    walks, null, rows = coded(objective)
    # the search: one call for the starts, then one call per step holding every active start's k candidates
    assert objective.calls[0] == 48 and len(objective.calls) == OPTIONS.steps + 1
    assert all(n % OPTIONS.k == 0 and n <= 48 * OPTIONS.k for n in objective.calls[1:])
    assert objective.calls[1] == 48 * OPTIONS.k and walks.evaluations == sum(objective.calls)
    assert np.all(np.diff(walks.scores, axis=1) >= 0)  # moves only when it improves
    assert np.all(walks.distance <= OPTIONS.budget + 1e-5)
    assert (walks.stopped >= 0).sum() > 0  # the budget stopped walks (it binds at these settings)

    added = rows[("Eyeglasses", "added")]
    assert added["search_rate"] >= 0.9 and added["null_rate"] <= 0.4, added
    assert added["significant"] and added["verdict"] == "prefers"
    assert rows[("Eyeglasses", "removed")]["search_count"] == 0
    assert significant(rows) == {("Eyeglasses", "added")}  # nothing else: every other axis is orthogonal to w

    # the null: the same moves at the same steps with the same lengths, in other directions
    free = null.stopped < 0
    assert free.sum() >= 40
    np.testing.assert_array_equal(null.moved[free], walks.moved[free])
    np.testing.assert_allclose(null.step_lengths[free], walks.step_lengths[free], rtol=1e-4, atol=1e-5)
    assert np.all(null.distance <= OPTIONS.budget + 1e-5)
    along = np.abs((null.end - null.start) @ w)
    assert along.mean() < 0.5 * ((walks.end - walks.start) @ w).mean()  # the null drifts, it does not climb


def test_lowering_the_linear_objective_removes_the_attribute():
    w, _ = GENERATOR.attribute_normal("Eyeglasses")
    walks, _, rows = coded(lambda z: z.astype(np.float64) @ w, sign=-1.0)
    assert np.all(np.diff(walks.scores, axis=1) <= 0)  # raw scores fall
    assert significant(rows) == {("Eyeglasses", "removed")}
    assert rows[("Eyeglasses", "removed")]["search_rate"] >= 0.9 and rows[("Eyeglasses", "added")]["search_count"] == 0


def test_a_constant_objective_moves_nothing_and_finds_nothing():
    walks, null, rows = coded(lambda z: np.ones(len(z)))
    assert walks.moved.sum() == 0 and null.moved.sum() == 0
    assert significant(rows) == set()


def test_selection_on_pure_noise_finds_nothing_significant():
    u = np.random.default_rng(7).standard_normal(32)
    walks, null, rows = coded(lambda z: np.sin(1e3 * (z.astype(np.float64) @ u)))
    assert walks.moved.sum() > 48  # it moves (each start about log(steps * k) times), and so does the null
    np.testing.assert_array_equal(null.moved[null.stopped < 0], walks.moved[null.stopped < 0])
    assert significant(rows) == set(), [coding.statement(rows[k]) for k in significant(rows)]


@pytest.mark.parametrize("optimizer", ["oneplusone", "cma"])
def test_nevergrad_optimisers_climb_with_all_candidates_in_one_call(optimizer):
    w, _ = GENERATOR.attribute_normal("Male")
    objective = Counted(lambda z: z.astype(np.float64) @ w)
    options = SearchOptions(k=4, sigma=0.1, steps=6, budget=None, optimizer=optimizer, seed=1)
    walks = search(objective, GENERATOR.sample(3, 0), options, progress_every=0)
    assert objective.calls == [3] + [12] * 6
    assert np.all(np.diff(walks.scores, axis=1) >= 0) and np.all(walks.scores[:, -1] > walks.scores[:, 0])
    again = search(objective, GENERATOR.sample(3, 0), options, progress_every=0)
    np.testing.assert_array_equal(again.latents, walks.latents)  # seeded


# ---------------------------------------------------------------------------------------------- the pieces

def test_holm_and_benjamini_hochberg_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted .005 .01 .03 .04 times 4 3 2 1 = .02 .03 .06 .04, running max .02 .03 .06 .06
    np.testing.assert_allclose(stats.holm(p), [0.03, 0.06, 0.06, 0.02])
    # BH: sorted times 4/rank = .02 .02 .04 .04, running min from the top: the same
    np.testing.assert_allclose(stats.benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])
    assert stats.holm([0.9, 0.8]).tolist() == [1.0, 1.0]
    # Fisher: [[3, 0], [0, 3]] has p = 2 / C(6, 3) = 0.1 (two tables as extreme out of 20)
    assert stats.fisher(3, 3, 0, 3)[1] == pytest.approx(0.1)
    assert stats.fisher(0, 0, 1, 3) == (None, None)


def test_coding_counts_only_the_walks_that_could_change():
    on, off = np.array([True, True, False, False]), np.array([False, True, True, False])
    measure = coding.Measure("A", "true", "binary", (on, off), (on, on))
    rows = {r["change"]: r for r in coding.aggregate([measure], 0.25)}
    assert (rows["added"]["search_count"], rows["added"]["search_n"]) == (1, 2)  # of the two that started off
    assert (rows["removed"]["search_count"], rows["removed"]["search_n"]) == (1, 2)
    assert rows["added"]["null_count"] == 0
    start = np.array([0.0, 1.0, 2.0, 3.0])  # SD over search + null starts = sqrt(1.25)
    measure = coding.Measure("t", "trait", "continuous", (start, start + [0.0, 0.2, 0.3, -0.5]), (start, start))
    rows = {r["change"]: r for r in coding.aggregate([measure], 0.25)}
    assert rows["increased"]["delta"] == pytest.approx(0.25 * np.sqrt(1.25))  # 0.2795: 0.3 counts, 0.2 not
    assert rows["increased"]["search_count"] == 1 and rows["decreased"]["search_count"] == 1
    assert "in 25% of searches (1 of 4), t (trait, from z) increased by more than 0.28" in coding.statement(
        rows["increased"])


def test_image_statistics_and_face_regions():
    faces = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    faces[0, :2] = (200, 100, 50)
    faces[1] = (10, 10, 10)
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[:, :2] = True
    values = coding.image_statistics(faces, masks)
    assert values["skin luminance"][0] == pytest.approx(0.2126 * 200 + 0.7152 * 100 + 0.0722 * 50)
    assert values["skin warmth"].tolist() == [150.0, 0.0]
    assert values["skin saturation"].tolist() == [pytest.approx(0.75), 0.0]
    z = GENERATOR.sample(3, 0)
    region, how = coding.face_region(GENERATOR, z)
    assert region.shape == (3, 32, 32) and "Face Dictionary" in how
    assert 0.05 < region.mean() < 0.3 and not region[:, 0].any()  # cheeks, forehead, chin: not the top row
    class Plain:
        image_size = 16
    region, how = coding.face_region(Plain(), z)
    assert region.shape == (3, 16, 16) and "central ellipse" in how and region[:, 8, 8].all()


def test_latent_traits_and_captions():
    z = np.zeros((2, 32), dtype=np.float32)
    skin = 11  # latent.AXES.index("skin")
    z[1, skin] = 2.0
    traits = coding.latent_traits(GENERATOR.model, z)
    assert traits["tone"][1] > traits["tone"][0] and traits["age"][0] == traits["age"][1]
    assert caption("saliency", 3.5501, 4.7940) == "saliency 3.5501 → 4.7940 (135.04 %)"  # the seed's caption
    assert caption("Male logit", -1.0, 2.0) == "Male logit -1.0000 → 2.0000 (change +3.0000)"
    assert record_steps(50, 10) == [0, 10, 20, 30, 40, 50] and record_steps(7, 3) == [0, 3, 6, 7]


# ------------------------------------------------------------------------------------------------ bad input

def settings_of(*overrides: str) -> dict:
    cfg = compose(["analysis=counterfactual", "logger=none", *overrides], "dissect")
    return build_analysis(cfg).settings(cfg)


def test_bad_options_fail_before_any_work_with_the_fix():
    with pytest.raises(ValueError, match=r"counterfactual.sigma=0.0: the step scale must be a number > 0"):
        settings_of("counterfactual.sigma=0")
    with pytest.raises(ValueError, match=r"counterfactual.sigma=-0.1: the step scale must be a number > 0"):
        settings_of("counterfactual.sigma=-0.1")
    one_step = minimum_budget(0.05, 32)
    assert one_step == pytest.approx(0.05 * np.sqrt(31.34), rel=1e-3)  # median of chi2(32) = 31.34
    with pytest.raises(ValueError, match=r"counterfactual.budget=0.5 is smaller than one step can satisfy.*"
                                         r"σ=0.4 in 32 latent dimensions has median length 2.24.*"
                                         r"Raise counterfactual.budget well above 2.24"):
        settings_of("counterfactual.budget=0.5")  # the default sigma (0.4 x sqrt(31.34) = 2.24)
    settings_of("counterfactual.budget=0.5", "counterfactual.sigma=0.05")  # 0.28 per step: fine
    with pytest.raises(ValueError, match=r"budget=0.5 is smaller than one step.*in 8 latent dimensions"):
        settings_of("counterfactual.budget=0.5", "counterfactual.sigma=0.3",
                    "counterfactual.generator={kind: user, latent_dim: 8}")
    with pytest.raises(ValueError, match=r"counterfactual.optimizer='adam': use one of random, oneplusone, cma"):
        settings_of("counterfactual.optimizer=adam")
    with pytest.raises(ValueError, match=r"counterfactual.direction='up': use one of raise, lower"):
        settings_of("counterfactual.direction=up")
    with pytest.raises(ValueError, match=r"counterfactual.k=0: use an integer >= 1"):
        settings_of("counterfactual.k=0")
    assert settings_of("counterfactual.budget=null")["budget"] is None


# ------------------------------------------------------------------------------------------------ end to end

TINY_SEARCH = ["counterfactual.starts=6", "counterfactual.k=4", "counterfactual.steps=4", "counterfactual.sigma=0.1",
               "counterfactual.record_every=2", "counterfactual.strips=2"]


@pytest.fixture(scope="module")
def p100_run(data_dir) -> Path:
    (run_dir,) = [p for p in find_run_dirs(shared_sweep(data_dir), "train") if "p100" in p.name]
    return run_dir


@pytest.fixture(scope="module")
def searched(p100_run, tmp_path_factory):
    """dissect.py analysis=counterfactual on the P=100 run, W&B offline in a temp dir."""
    root = tmp_path_factory.mktemp("counterfactual_p100")
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(root / "wandb_dir"), "WANDB_SILENT": "true"}
    result = run_script("dissect.py", "analysis=counterfactual", f"run={p100_run}", f"paths.root_dir={root}",
                        "logger=wandb", *TINY_SEARCH, env=env)
    (out,) = [p.parent for p in (root / "outputs" / "dissect").rglob("counterfactual.json")]
    return out, json.loads((out / "counterfactual.json").read_text()), result


@pytest.mark.slow
def test_the_analysis_writes_its_files_report_and_wandb_run(searched, p100_run):
    out, summary, result = searched
    for name in ("codes.csv", "searches.csv", "changes.csv", "agreement.csv", "trajectories.npz", "images.npz",
                 "plots/strip_00.png", "plots/strip_01.png", "plots/scores.png", "report.html", "run.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert not (out / "plots/strip_02.png").exists()
    record = json.loads((out / "run.json").read_text())
    assert record["kind"] == "counterfactual" and record["status"] == "finished"
    assert summary["objective"] == {"head": "Male", "kind": "logit", "direction": "raise", "label": "Male logit"}
    assert summary["generator"]["class"] == "SynthFacesGenerator" and not summary["generator"]["resized"]
    assert "Face Dictionary" in summary["face_region"] and summary["record_steps"] == [0, 2, 4]

    tracks = np.load(out / "trajectories.npz")
    assert tracks["search_latents"].shape == (6, 5, 32) and tracks["search_scores"].shape == (6, 5)
    assert np.all(np.diff(tracks["search_scores"], axis=1) >= 0)
    faces = np.load(out / "images.npz")
    assert faces["search"].shape == (6, 3, 32, 32, 3) and faces["null"].shape == (6, 3, 32, 32, 3)
    # the recorded scores are the classifier's own logits of the rendered faces (no other code path)
    from facebias.models.classifier import AttributeClassifier

    model = AttributeClassifier.load_from_checkpoint(p100_run / "checkpoints" / "best.ckpt", weights_only=True,
                                                     map_location="cpu").eval()
    with torch.no_grad():
        x = model.preprocess({"image": torch.from_numpy(faces["search"][:, -1])})["image"]
        logits = model(x)[:, 0].double().numpy()
    np.testing.assert_allclose(logits, tracks["search_scores"][:, -1], rtol=1e-4, atol=1e-4)

    codes = read_csv(out / "codes.csv")
    names = {r["measure"] for r in codes}
    assert {"Eyeglasses (true, from z)", "skin tone (trait, from z)", "face width (trait, from z)",
            "skin luminance (image, face region)", "Male (classifier p100)"} <= names, names
    assert {r["change"] for r in codes} == {"added", "removed", "increased", "decreased"}
    (male,) = [r for r in read_csv(out / "agreement.csv") if r["attribute"] == "Male"]
    assert 0.0 <= float(male["search_agreement"]) <= 1.0
    searches = read_csv(out / "searches.csv")
    assert len(searches) == 6 and all(" → " in r["caption"] for r in searches)

    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "Codes against the null" in html
    assert "Fisher" in html and searches[0]["caption"] in html

    (path,) = find_runs(out)
    wandb_run = read_run(path)
    assert wandb_run["job_type"] == "counterfactual"
    logged = {k: v for step in wandb_run["history"] for k, v in step.items()}
    assert logged["counterfactual/codes/_type"] == "table-file" and logged["counterfactual/report/_type"] == "html-file"
    assert logged["counterfactual/strips/00/_type"] == "image-file"
    assert "counterfactual/search/evaluations" in wandb_run["summary"]
    assert "what raises/lowers Male logit" in result.stdout and "wandb sync" in result.stdout


@pytest.mark.slow
def test_a_head_the_model_lacks_and_a_generator_of_another_size(p100_run, tmp_path, caplog):
    cfg = compose(["analysis=counterfactual", f"run={p100_run}", "logger=none", "counterfactual.head=Smiling",
                   f"paths.root_dir={tmp_path}", *TINY_SEARCH], "dissect")
    with pytest.raises(ValueError, match=r"counterfactual.head=Smiling: the classifier of .* has no head 'Smiling'; "
                                         r"its heads are \['Male'\]"):
        analyse(cfg, tmp_path / "bad")
    assert not (tmp_path / "bad" / "codes.csv").exists()

    cfg = compose(["analysis=counterfactual", f"run={p100_run}", "logger=none", f"paths.root_dir={tmp_path}",
                   "counterfactual.generator={kind: synthfaces, image_size: 40}", "counterfactual.direction=lower",
                   "counterfactual.objective=probability", *TINY_SEARCH], "dissect")
    with caplog.at_level(logging.INFO):
        summary = analyse(cfg, tmp_path / "resized")
    said = [r.getMessage() for r in caplog.records if "draws 40 px faces but the classifier takes 32 px" in r.getMessage()]
    assert len(said) == 1  # said once, not once per batch
    assert summary["generator"]["resized"] and summary["generator"]["image_size"] == 40
    assert any("40 px" in note for note in summary["notes"])
    assert "40 px faces" in (tmp_path / "resized" / "report.html").read_text()
    scores = np.load(tmp_path / "resized" / "trajectories.npz")["search_scores"]
    assert np.all((scores >= 0) & (scores <= 1)) and np.all(np.diff(scores, axis=1) <= 0)  # P(Male), lowered
    assert np.load(tmp_path / "resized" / "images.npz")["search"].shape[2:] == (40, 40, 3)
