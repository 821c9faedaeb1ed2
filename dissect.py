"""Network dissection of trained runs: `python dissect.py analysis=units run=outputs/train/<dir>`.

analysis=layers lists the layer names, analysis=sweep draws the controlled-experiment figures over P
sweeps. Writes CSV tables, plots, an HTML report and dissect.json into its Hydra output dir and logs them
to the training run's W&B group with job_type=dissect; see conf/dissect.yaml and facebias.dissect.
"""

import hydra
from omegaconf import DictConfig

import facebias.resolvers  # noqa: F401  (registers the resolvers conf/ uses)


@hydra.main(version_base="1.3", config_path="conf", config_name="dissect")
def main(cfg: DictConfig) -> None:
    from facebias.dissect.task import dissect_task

    dissect_task(cfg)


if __name__ == "__main__":
    main()
