"""Everything a stage writes for a person or a tool: files, figures, HTML, W&B and the console.

One package so that every analysis (fairness, units, layers, and the ones to come) writes its outputs
the same way: ``files`` (atomic JSON/CSV), ``plots`` (matplotlib on Agg), ``html`` (jinja2 templates),
``wandb`` (the one ``wandb_session`` context manager) and ``console`` (summaries and logging).
Nothing heavy is imported at package level.
"""
