"""The fairness audit's per-head logic: thresholds and metrics per head, the reference's attribute categories,
the tables (rows for CSV and W&B) and the figures. ``facebias.analyses.fairness`` runs it on a trained run.
Nothing heavy is imported here.
"""
