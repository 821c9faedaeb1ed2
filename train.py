"""Train a face-attribute classifier: `python train.py +experiment=p80` (Hydra; see conf/train.yaml).

Debug: `python train.py debug=fdr` (or `debug=limit`, `overfit`, `profiler`); hyperparameter search:
`python train.py -m hparams_search=optuna` (maximises `optimized_metric`, val/AP by default).
"""

import hydra
from omegaconf import DictConfig

import facebias.resolvers  # noqa: F401  (registers the resolvers conf/ uses)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from facebias.training.objective import metric_value
    from facebias.training.task import train

    metrics = train(cfg)
    name = cfg.get("optimized_metric")
    if not name or "val" not in metrics:  # debias.stage_only: nothing was trained
        return None
    return metric_value(metrics, name)  # what a sweeper (hparams_search) optimises


if __name__ == "__main__":
    main()
