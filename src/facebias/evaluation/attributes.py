"""The attribute categories Ramaswamy et al. average their CelebA results over, mapped onto a model's heads.

The reference code (princetonvisualai/gan-debiasing, ``utils.get_attr_list``) evaluates 26 CelebA
attributes with protected attribute Male and reports averages over three groups (paper, Sec. 5 and
Table 1): attributes whose labels are *inconsistent* between annotators, attributes whose look
*depends on gender* (they are labelled differently on men and women), and *gender-independent* ones.
The repository holds only the 26 indices; the grouping is the paper's. The three groups below
partition exactly those 26 (checked in the tests). The categories only make sense with gender as
the protected attribute, so they are computed only when the protected attribute is ``Male``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

INCONSISTENTLY_LABELLED = ("Big_Lips", "Big_Nose", "Oval_Face", "Pale_Skin", "Wavy_Hair")
GENDER_DEPENDENT = ("Arched_Eyebrows", "Attractive", "Bushy_Eyebrows", "Pointy_Nose", "Receding_Hairline",
                    "Young")
GENDER_INDEPENDENT = ("Bags_Under_Eyes", "Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair", "Chubby",
                      "Wearing_Earrings", "Eyeglasses", "Gray_Hair", "High_Cheekbones", "Mouth_Slightly_Open",
                      "Narrow_Eyes", "Smiling", "Straight_Hair", "Wearing_Hat")

CATEGORIES: dict[str, tuple[str, ...]] = {
    "inconsistently_labelled": INCONSISTENTLY_LABELLED,
    "gender_dependent": GENDER_DEPENDENT,
    "gender_independent": GENDER_INDEPENDENT,
}
# The reference's 26 target attributes (CelebA column indices 1, 2, 3, 5, ... 39), in CelebA order.
REFERENCE_ATTRIBUTES = (
    "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bangs", "Big_Lips", "Big_Nose", "Black_Hair",
    "Blond_Hair", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Eyeglasses", "Gray_Hair", "High_Cheekbones",
    "Mouth_Slightly_Open", "Narrow_Eyes", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Young",
)  # fmt: skip
CATEGORY_PROTECTED = "Male"
AVERAGED = ("AP", "DEO", "BA", "BA_ref", "KL")


def category_of(attribute: str) -> str | None:
    """The category an attribute belongs to, or None (e.g. Male, Mustache: not among the reference's 26)."""
    return next((name for name, members in CATEGORIES.items() if attribute in members), None)


def category_coverage(heads: Iterable[str]) -> dict[str, dict[str, list[str]]]:
    """Per category: the model's heads that belong to it (``present``) and the members it lacks (``missing``)."""
    heads = list(heads)
    return {name: {"present": [a for a in members if a in heads], "missing": [a for a in members if a not in heads]}
            for name, members in CATEGORIES.items()}


def category_averages(per_head: Mapping[str, Mapping[str, float]], metrics: Sequence[str] = AVERAGED,
                      ) -> dict[str, dict]:
    """Mean of every per-head value (point, ``_median``, ``_std``) over the heads present in each category.

    ``per_head`` maps a head name to its fairness report (``fairness_report``'s keys). A category
    none of whose members is a head gets ``None`` values and says which attributes it would need.
    Heads outside every category are listed under ``uncategorised``.
    """
    coverage = category_coverage(per_head)
    result: dict[str, dict] = {}
    for name, cover in coverage.items():
        entry: dict = {"attributes": cover["present"], "missing": cover["missing"], "n": len(cover["present"])}
        for metric in metrics:
            for suffix in ("", "_median", "_std"):
                key = metric + suffix
                values = [per_head[a][key] for a in cover["present"] if per_head[a].get(key) is not None]
                entry[key] = float(np.mean(values)) if values and len(values) == len(cover["present"]) else None
        result[name] = entry
    result["uncategorised"] = {"attributes": [h for h in per_head if category_of(h) is None]}
    return result
