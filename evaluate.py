"""Evaluate a trained run: `python evaluate.py run=outputs/train/<dir>` (or ckpt=<file>, or sweep=<multirun dir>).

The fairness audit (analysis=fairness, conf/analysis/fairness.yaml) by default; any analysis of the
`analysis` group runs the same way. Writes into its Hydra output dir and the training run's W&B group.
"""

import hydra
from omegaconf import DictConfig

import facebias.resolvers  # noqa: F401  (registers the resolvers conf/ uses)


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from facebias.analyses.driver import analyse

    analyse(cfg)


if __name__ == "__main__":
    main()
