"""What the result files hold, key by key: metrics.json (train and evaluate), dissect.json, regions.json and
counterfactual.json (the analyses' files share ``AnalysisResult``).

TypedDicts, so a reader knows what a key means without reading the writer, and a type checker can
follow ``metrics["heads"]["Male"]["test"]["AP_median"]``. Every file carries ``schema`` =
``SCHEMA_VERSION``; a reader refuses a newer schema rather than misreading it. Fractions throughout
(AP 0.91, not 91); the CSV tables are the ones scaled x100. NaN is written as null.
"""

from __future__ import annotations

from typing import Any, TypedDict

SCHEMA_VERSION = 1


class CellAccuracy(TypedDict):
    accuracy: float | None  # accuracy of the cell's images; null for an empty cell
    count: int


class StereotypeGap(TypedDict, total=False):
    stereotypical: float  # mean accuracy of the stereotypical cells (each cell weighted once)
    counter_stereotypical: float
    gap: float  # stereotypical - counter_stereotypical
    direction: str  # positive: P(y=1 | c=1) >= P(y=1 | c=0) in training


class TestMetrics(TypedDict, total=False):
    """Test-split numbers of one head at its calibrated threshold: point values and, with a bootstrap,
    ``<metric>_median`` / ``<metric>_std`` for AP, DEO, BA, BA_ref and KL (KL's pool the 4·B directions)."""

    n: int
    positives: int
    accuracy: float
    AP: float
    DEO: float  # |TPR(g=0) - TPR(g=1)|
    BA: float  # directional BA attribute -> task, direction from the training split (docs/design.md §5)
    BA_ref: float  # the same with the direction from the evaluated split (gan-debiasing's); 0 on balanced tests
    KL: float  # mean of the four single-direction KL divergences (KL_pos_01, KL_pos_10, KL_neg_01, KL_neg_10)


class HeadEvaluation(TypedDict):
    threshold: float  # calibrated on val: the cp-th largest val score, predict score > threshold
    val: dict[str, int]  # n, positives
    test: TestMetrics
    cells: dict[str, CellAccuracy]  # y1_c1, y1_c0, y0_c1, y0_c0 (target x cell variable)
    gap: StereotypeGap
    stereotype: dict[str, Any]  # direction and the training rates it was read from
    warnings: list[str]


class Source(TypedDict, total=False):
    run_dir: str | None  # the training run; null for a model the user brings
    checkpoint: str  # its checkpoint (a user model: its state_dict file)
    checkpoint_mtime: float
    checkpoint_size: int
    model_file: str  # a user model (dissect.py model.file=): its Python file and class
    class_name: str


class AnalysisResult(TypedDict, total=False):
    """What every analysis's result file starts with: the run it read (``TrainedRun.provenance()``), the
    settings that made it, and where it went."""

    schema: int
    job: str  # evaluate | dissect | explain-regions | counterfactual
    source: Source
    experiment: str
    family: str
    P: float | None  # the planted P, null without a planted concept
    concept: str | None
    targets: list[str]
    train_seed: int
    model: dict[str, Any]  # a user model only: its model.* options (file, class_name, heads, image_size, mean, std)
    settings: dict[str, Any]
    wandb: dict[str, str]  # group and name
    files: list[str]
    seconds: float


class EvaluationMetrics(AnalysisResult, total=False):
    """metrics.json of evaluate.py (analysis=fairness)."""

    # settings (AnalysisResult): n_bootstrap, seed, checkpoint, precision, protected_override, threshold rule
    data: dict[str, Any]  # the data module's description (source, splits, N)
    protected: str  # g of the fairness metrics
    cell_by: str  # the cell variable (the planted concept, else the protected attribute)
    heads: dict[str, HeadEvaluation]
    categories: dict[str, Any] | None  # the reference's category averages (protected Male only)


class TrainingMetrics(TypedDict, total=False):
    """metrics.json of train.py. Cell accuracies and the gap here use the 0.5 threshold on the sigmoid
    (``threshold``); evaluate.py reports them at the calibrated threshold."""

    schema: int
    experiment: str | None
    family: str | None
    data: dict[str, Any]
    best_checkpoint: str
    last_checkpoint: str
    threshold: float  # 0.5
    precision: str  # what trained the model (e.g. bf16-mixed, 32-true); every score here is fp32
    val: dict[str, float]  # AP (mean over heads), AP_<head>, acc_<head>, acc, acc_y1_c1 ..., gap ...
    test: dict[str, float]
    cells_by: str | None  # what c splits: the planted concept, else the protected attribute (datamodule.cell_column)
    test_cells: dict[str, CellAccuracy]
    test_gap: StereotypeGap
    seconds: float
    wandb: dict[str, str]


class LayerDissection(TypedDict):
    shape: list[int]  # units, h, w of the layer's map at the model's input size
    units: int
    detectors: int  # units whose best concept's IoU exceeds the threshold
    by_region: dict[str, int]  # detectors per face region
    by_concept: dict[str, int]  # detectors per concept
    concept_detectors: int  # detectors whose concept beats its region's other concepts (units.level_rule)
    region_detectors: int  # the other detectors: they respond to the region as much as to the concept
    region_level_by_region: dict[str, int]  # region-level detectors per face region
    biased: dict[str, dict[str, int]]  # per non-local group: biased, toward_1, toward_0


class DissectionResult(AnalysisResult, total=False):
    """dissect.json of dissect.py analysis=units."""

    network: str
    image_size: int
    device: str
    dictionary: dict[str, Any]  # split, n_images, mask_size, confidence, concepts, regions, groups, cells,
    #                             landmarks (requested 68 | 5, source, faces, with_68, fallback_5, fallback_files),
    #                             left_out (count, files, reasons: faces no 68 points and no five landmarks were
    #                             found for, left out of the dictionary and the dissection; n_images excludes them)
    pairing: dict[str, Any]  # quantile, iou_threshold, rule, region_margin, levels
    nonlocal_rule: str
    layers: dict[str, LayerDissection]
    strongest_detectors: list[dict[str, Any]]
    dictionary_quality: dict[str, Any] | None  # SynthFaces: mean IoU of each ellipse concept vs the exact mask


class RegionScore(TypedDict, total=False):
    """One face region of regions.json: the share of its mask above each map's threshold, averaged over the
    faces where the region exists; ``<key>_low`` / ``<key>_high`` bound a percentile bootstrap interval (95 %)."""

    region: str
    n: int  # faces where the region exists (n_g0, n_g1: per protected group)
    n_g0: int
    n_g1: int
    all: float  # every explained face
    g0: float  # protected = 0
    g1: float  # protected = 1
    diff: float  # g1 - g0
    random_weights: float | None  # the same architecture with randomised weights (sanity check)


class RegionsResult(AnalysisResult, total=False):
    """regions.json of dissect.py analysis=regions."""

    # settings (AnalysisResult): layer, method, head, target_class, split, max_images, seed, n_bootstrap, ...
    network: str
    image_size: int
    device: str
    layer: str
    layer_shape: list[int]  # units, h, w of the explained layer's map
    method: str  # GradCAM, GradCAM++, LayerCAM, ScoreCAM, EigenCAM, ...
    head: str
    target_class: int
    protected: str
    selection: dict[str, Any]  # split, n_images, per_group, rule
    dictionary: dict[str, Any]  # mask_size, confidence, concepts, landmarks and left_out (as dissect.json's), crop
    statistic: str
    n_bootstrap: int
    regions: list[RegionScore]
    sanity: dict[str, Any] | None  # rho, passed (rho < limit), limit, seed, random_scores, rule; null: not run


class CounterfactualCode(TypedDict, total=False):
    """One row of counterfactual.json's ``codes`` (and codes.csv): one measure changing one way, searches vs null."""

    measure: str  # e.g. "Eyeglasses (true, from z)", "skin luminance (image, face region)", "Male (classifier p100)"
    name: str
    source: str  # true | trait | classifier | image
    coder: str  # the classifier (source classifier)
    change: str  # added | removed (binary) | increased | decreased (continuous)
    delta: float | None  # continuous: the change counted, delta_sd x the SD of the start values; null for binary
    search_count: int  # searches that made the change
    search_n: int  # searches that could (binary: those starting without it for added, with it for removed)
    search_rate: float | None
    null_count: int
    null_n: int
    null_rate: float | None
    odds_ratio: float | None  # Fisher's exact test, searches vs null
    p_value: float | None
    p_adjusted: float | None  # Holm or Benjamini-Hochberg over every row with a p-value
    significant: bool
    verdict: str  # prefers | avoids | ""


class CounterfactualResult(AnalysisResult, total=False):
    """counterfactual.json of dissect.py analysis=counterfactual."""

    # settings (AnalysisResult): head, objective, direction, optimizer, starts, k, sigma, steps, budget, seed, ...
    objective: dict[str, str]  # head (null for a map), kind (logit | probability | map_max | map_mean), direction
    #                            (raise | lower), label
    generator: dict[str, Any]  # its options, class, latent_dim, image_size, model_input_size, resized
    device: str
    face_region: str  # how the image statistics' face region was drawn
    search: dict[str, Any]  # evaluations, seconds, evaluations_per_second, moves, stopped_by_budget, mean_start/end
    null: dict[str, Any]  # moves, stopped_by_budget, mean_distance, mean_start/end (scored at record_steps), rule
    measures: dict[str, str]  # measure -> what it is
    test: str  # the significance test and correction, in words
    codes: list[CounterfactualCode]
    preferred: list[str]  # "in X % of searches, A was added (null: Y %)" for every significant row the model prefers
    avoided: list[str]
    agreement: list[dict[str, Any]]  # classifier coding vs true coding per attribute: search/null agreement
    searches: list[dict[str, Any]]  # per search: start/end score, caption, moves, distance, stopped_at, codes
    record_steps: list[int]  # the steps whose faces images.npz and the strips keep
    notes: list[str]  # e.g. the resize note
