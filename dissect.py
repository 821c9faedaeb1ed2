"""Network dissection of trained runs: `python dissect.py analysis=units run=outputs/train/<dir>`.

analysis=layers lists the layer names; sweep=<dir> (or a list) dissects every run of P sweeps and draws the
controlled-experiment figures. The analyses live in facebias.analyses (conf/analysis/).
"""

import hydra
from omegaconf import DictConfig

import facebias.resolvers  # noqa: F401  (registers the resolvers conf/ uses)


@hydra.main(version_base="1.3", config_path="conf", config_name="dissect")
def main(cfg: DictConfig) -> None:
    from facebias.analyses.driver import analyse

    analyse(cfg)


if __name__ == "__main__":
    main()
