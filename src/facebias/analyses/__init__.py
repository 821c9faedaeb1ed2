"""Analyses of trained runs, one module each, dispatched by the ``analysis`` config group.

Each analysis is a class (``base.Analysis``) with ``settings(cfg)``, ``run(trained_run, settings, ctx)``
for one training run and ``summarize(results, settings, ctx)`` for a sweep; ``conf/analysis/<name>.yaml``
names it with ``_target_``. ``driver.analyse(cfg)`` is what evaluate.py and dissect.py call: one run, or
every run of one or more sweeps (reusing current results). See docs/analyses.md to add one.
"""
