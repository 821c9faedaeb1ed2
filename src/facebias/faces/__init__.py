"""Faces as the analyses see them: the concept vocabulary, the aligned-crop geometry and the Face Dictionary.

Dissection (units), the region explanations and the counterfactual coding all need the same concepts,
regions and masks, so they live here, below every analysis. Nothing heavy is imported at package level.
"""
