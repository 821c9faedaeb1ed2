"""Black-box counterfactual search in a generator's latent space (docs/design.md §9, issue 14).

- ``search``: the objective (a head's logit or probability of a classifier, or the spatial maximum or mean
  of a map the model outputs, through generator + model in one batched pass; the model's output probed
  against it first), random search as Kulynych's seed describes it, nevergrad's optimisers as alternatives,
  and the null: random walks with the same step lengths and counts and no selection.
- ``coding``: what changed between a walk's start and end: SynthFaces' true attributes and continuous
  traits read from z, classifier heads, image statistics in the face region.
- ``stats``: the aggregates ("in X % of searches, A changed by more than δ") beside the null's, with
  Fisher's exact test and a Holm or Benjamini–Hochberg correction.
- ``report``: the strips (initial → intermediates → final, captioned "score a → b (x %)") and the score
  figure.

``facebias.analyses.counterfactual`` runs it on a trained run or a model the user brings
(``dissect.py analysis=counterfactual run=...`` or ``model.file=...``).
"""

from .search import OPTIMIZERS, Objective, SearchOptions, Trajectories, null_walks, search

__all__ = ["OPTIMIZERS", "Objective", "SearchOptions", "Trajectories", "null_walks", "search"]
