"""Train a face-attribute classifier: `python train.py +experiment=p80` (Hydra; see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

import facebias.resolvers  # noqa: F401  (registers the resolvers conf/ uses)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from facebias.training.task import train

    metrics = train(cfg)
    return float(metrics["val"]["AP"])  # for sweepers that optimise


if __name__ == "__main__":
    main()
