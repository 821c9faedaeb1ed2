"""Facial-region explanations (docs/design.md §8): class activation maps from the ``grad-cam`` package, batched;
the share of each face region covered by the high part of a map; bootstrap intervals per protected group; the
face template the scores are painted on. ``facebias.analyses.regions`` runs them on a trained run.

Nothing heavy is imported at package level (``pytorch_grad_cam`` pulls in OpenCV).
"""
