"""Evaluation of trained runs: fairness audit per head, tables, plots, W&B, and the summary of a sweep.

Entry: ``python evaluate.py run=<training run dir>`` (or ``ckpt=``, or ``sweep=<multirun dir>``);
``facebias.evaluation.task.evaluate`` does the work. Nothing heavy is imported here.
"""
