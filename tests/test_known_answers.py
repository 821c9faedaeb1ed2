"""The known answers of the controlled experiments, end to end (docs/design.md §4, §5, §7).

1. Fairness: a P=100 model (every man and no woman wears glasses in training) must come out clearly more
   biased than a P=50 model trained the same way, on every bias measure at the calibrated threshold: DEO,
   directional BA, KL and the cell gap. BA_ref is 0 for both (the test split is balanced over the cells).
2. Dissection: a network built to detect dark horizontal bands at the eye line must get an eye-region
   detector where the same network with that unit's weights randomised does not.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import TINY, compose
from test_evaluate import run_script, shared_sweep
from torch import nn

from facebias.analyses.driver import analyse
from facebias.faces.concepts import LOCAL_CONCEPT_REGION
from facebias.reporting.files import read_csv
from facebias.runs import RunRecord, find_runs

# ------------------------------------------------------------------------------- fairness: P=100 vs P=50

# The session's shared sweep (1 epoch on 1,200 faces, 64 test faces) is too weak for this: its P=50 and
# P=100 models have the same DEO (18.75) and KL is undefined at P=50 (16 faces per cell are too few for
# any histogram mass to survive the reference's truncation). So: more faces (a 212-face test split, 53
# per cell) and four epochs at a higher learning rate, the same for both P.
KNOWN_SWEEP = ["data.synth.n_faces=4000", "trainer.max_epochs=4", "model.optimizer.lr=3e-3", "data.batch_size=32"]

# Measured (CPU, this config; point estimates, x100 except KL):
#   P=50:  DEO  7.55, BA  0.00, KL  1.16, gap -6.60 (AP 86.0, accuracy 78.8)
#   P=100: DEO 96.23, BA 49.06, KL 11.52, gap 98.11 (AP 51.9: a pure concept detector)
# Margins are about half the observed differences (88.7, 49.1, 10.4, 104.7).
MARGINS = {"DEO": 40.0, "BA": 25.0, "KL": 5.0, "gap": 50.0}


@pytest.fixture(scope="module")
def fairness_rows(data_dir, tmp_path_factory) -> dict[float, dict]:
    """evaluate.py's sweep table (point estimates) of a P=50 and a P=100 run trained with KNOWN_SWEEP."""
    root = tmp_path_factory.mktemp("known_sweep")
    run_script("train.py", "-m", "+experiment=p50,p100", *TINY, *KNOWN_SWEEP, f"paths.root_dir={root}",
               f"paths.data_dir={data_dir}", timeout=1200)
    (sweep,) = (root / "multirun" / "train").iterdir()
    cfg = compose(["logger=none", "n_bootstrap=0", "plots=false", f"sweep={sweep}", f"paths.root_dir={root}"],
                  "evaluate")
    rows = analyse(cfg, root / "summary")["rows"]
    assert [row["P"] for row in rows] == [50.0, 100.0]
    return {row["P"]: row for row in rows}


@pytest.mark.slow
@pytest.mark.parametrize("metric", list(MARGINS))
def test_p100_model_is_clearly_more_biased_than_p50_at_the_calibrated_threshold(fairness_rows, metric):
    p50, p100 = fairness_rows[50.0][metric], fairness_rows[100.0][metric]
    assert p50 is not None and p100 is not None, f"{metric} undefined: P=50 {p50}, P=100 {p100}"
    assert p100 > p50 + MARGINS[metric], f"{metric}: P=100 {p100:.2f} vs P=50 {p50:.2f}"


@pytest.mark.slow
def test_ba_ref_is_zero_on_the_balanced_test_split_and_ba_is_zero_without_a_planted_correlation(fairness_rows):
    for p, row in fairness_rows.items():
        # P(y=1 | c) = P(y=1) = 1/2 on a test split balanced over the four (y x c) cells: both signs are 0
        assert row["BA_ref"] == 0.0, (p, row["BA_ref"])
    # at P=50 the training split is uncorrelated (424 men and 424 women, half of each with glasses)
    assert fairness_rows[50.0]["BA"] == 0.0


# --------------------------------------------------------------------- dissection: a built eye-band unit

UNITS, WIDTH = 8, 5


def dark_band_kernel(width: int = WIDTH) -> torch.Tensor:
    """3 x width, all channels: the rows above and below minus twice the middle row (a thin dark horizontal
    line on a brighter face scores high; a uniform region or a one-sided edge scores 0 or half)."""
    kernel = torch.zeros(3, 3, width)
    kernel[:, 0], kernel[:, 1], kernel[:, 2] = 1.0, -2.0, 1.0
    return kernel / (3 * width)


class BandClassifier(pl.LightningModule):
    """A classifier-shaped network whose one block (``features``) is a bank of 3 x WIDTH convolutions + ReLU on
    the input image (replicate padding: no artificial edge at the image border), then a linear head."""

    def __init__(self, targets=("Male",), units: int = UNITS, width: int = WIDTH):
        super().__init__()
        self.save_hyperparameters()
        self.targets = [str(t) for t in targets]
        self.net = nn.Sequential()
        self.net.add_module("features", nn.Sequential(
            nn.Conv2d(3, units, (3, width), padding=(1, width // 2), padding_mode="replicate"), nn.ReLU()))
        self.net.add_module("pool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
        self.net.add_module("head", nn.Linear(units, len(self.targets)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def band_model(planted: bool, seed: int = 0) -> BandClassifier:
    """Seeded random weights (PyTorch's default range); ``planted``: unit 0 is the dark-band detector."""
    model = BandClassifier()
    generator = torch.Generator().manual_seed(seed)
    conv = model.net.features[0]
    bound = 1 / math.sqrt(conv.weight[0].numel())
    with torch.no_grad():
        for param in (conv.weight, conv.bias):
            param.copy_((torch.rand(param.shape, generator=generator) * 2 - 1) * bound)
        if planted:
            conv.weight[0] = dark_band_kernel()
            conv.bias[0] = 0.0
    return model


def built_run(template: Path, run_dir: Path, model: BandClassifier) -> Path:
    """A training run dir for ``model``: the template run's manifest (data, splits) with this model and checkpoint."""
    record = RunRecord.read(template)
    record.config["model"] = {"_target_": f"{__name__}.BandClassifier", "targets": model.targets,
                              "units": UNITS, "width": WIDTH}
    record.checkpoints = {"best": "checkpoints/best.ckpt"}
    (run_dir / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pl.__version__}, run_dir / "checkpoints" / "best.ckpt")
    record.write(run_dir)
    return run_dir


@pytest.fixture(scope="module")
def band_dissections(data_dir, tmp_path_factory) -> dict[str, tuple[dict, list[dict]]]:
    """dissect.py analysis=units on the planted network and its control, on the P=50 run's test faces."""
    (template,) = [p for p in find_runs(shared_sweep(data_dir), "train") if p.name.endswith("p50")]
    root = tmp_path_factory.mktemp("band")
    result = {}
    for name, planted in (("planted", True), ("control", False)):
        run_dir = built_run(template, root / name, band_model(planted))
        cfg = compose(["analysis=units", f"run={run_dir}", "layers=[features]", "logger=none", "plots=false",
                       "exact_check_images=0", "dictionary.landmarks=5", f"paths.root_dir={root}"], "dissect")
        out = root / f"{name}_dissect"
        summary = analyse(cfg, out)
        result[name] = summary, [r for r in read_csv(out / "units.csv") if r["layer"] == "features"]
    return result


def test_a_unit_built_to_detect_the_eye_band_is_an_eye_region_detector(band_dissections):
    # Measured with the five-point dictionary (64 test faces at 32 px, 8 units): planted unit 0 is a brows detector, IoU 0.097 (next:
    # mouth, Eyeglasses); the control's unit 0 is best at hair, IoU 0.011. Eye-region detectors: 1 vs 0.
    # Over seeds 0-11 the planted unit was always brows 0.097 and none of the 96 random units was an
    # eye-region detector (at 64 px random units often are: eyes are then the most salient structure).
    planted, planted_units = band_dissections["planted"]
    control, control_units = band_dissections["control"]
    eye = {name: summary["layers"]["features"]["by_region"].get("eye", 0)
           for name, summary in (("planted", planted), ("control", control))}
    assert eye["planted"] > eye["control"], eye
    assert eye["planted"] >= 1
    unit = planted_units[0]
    assert unit["detector"] == "True" and unit["region"] == "eye", unit
    assert unit["concept"] in {"Eyeglasses", "eyes", "brows"} and LOCAL_CONCEPT_REGION[unit["concept"]] == "eye"
    assert float(unit["iou"]) > 2 * 0.04, unit  # measured 0.097
    randomised = control_units[0]
    assert not (randomised["detector"] == "True" and randomised["region"] == "eye"), randomised
    # the two networks differ in unit 0 only: every other unit got the same threshold and the same pairing
    for mine, other in zip(planted_units[1:], control_units[1:], strict=True):
        assert mine == other
