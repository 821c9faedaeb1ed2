"""Evaluate a trained run: `python evaluate.py run=outputs/train/<dir>` (or ckpt=<file>, or sweep=<multirun dir>).

Writes metrics.json, CSV tables and plots into its Hydra output dir and logs them to the training run's
W&B group with job_type=eval; see conf/evaluate.yaml and facebias.evaluation.
"""

import hydra
from omegaconf import DictConfig

import facebias.resolvers  # noqa: F401  (registers the resolvers conf/ uses)


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> float | None:
    from facebias.evaluation.task import evaluate

    result = evaluate(cfg)
    heads = result.get("heads")
    return float(next(iter(heads.values()))["test"]["AP"]) if heads else None  # for sweepers that optimise


if __name__ == "__main__":
    main()
