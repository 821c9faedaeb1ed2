"""Network dissection (docs/design.md §7): the Face Dictionary and unit-concept pairing.

- ``facebias.faces.dictionary`` (re-exported): per-image concept masks from five landmarks or 68 points
  (``face_dictionary``), and scoring them against exact masks (``score_against_exact``).
- ``units``: NetDissect IoU between thresholded unit maps and the masks (``dissect``).
- ``nonlocal_units``: units whose response separates image groups (``biased_units``).
- ``layers``: module names, output shapes and forward hooks (``list_layers``).

Names are imported lazily so that importing the package does not pull in torch.
"""

from importlib import import_module

_HOME = {
    "FaceDictionary": "facebias.faces.dictionary",
    "face_dictionary": "facebias.faces.dictionary",
    "dictionary_for_table": "facebias.faces.dictionary",
    "exact_masks_to_crop": "facebias.faces.dictionary",
    "score_against_exact": "facebias.faces.dictionary",
    "random_landmarks": "facebias.faces.dictionary",
    "dissect": "units",
    "level_rule": "units",
    "DissectionResult": "units",
    "LayerDissection": "units",
    "DictionaryBatches": "units",
    "biased_units": "nonlocal_units",
    "biased_unit_counts": "nonlocal_units",
    "GroupActivationStats": "nonlocal_units",
    "list_layers": "layers",
    "layer_output_shapes": "layers",
    "get_layer": "layers",
    "ActivationRecorder": "layers",
}

__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'facebias.dissect' has no attribute {name!r}")
    home = _HOME[name]
    return getattr(import_module(home if "." in home else f"facebias.dissect.{home}"), name)
