"""Run one search: ``python -m experiments.run [+exp=NAME] [key=value ...]``.

Hydra composes ``conf/config.yaml`` (and ``conf/exp/NAME.yaml``); the run's files go to
Hydra's output directory. ``-m seed=0,1,2`` sweeps.
"""

from __future__ import annotations

import logging
import signal
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from llmatic.experiment import ConfigError, run_experiment
from llmatic.llm.models import ModelNotFoundError

log = logging.getLogger("llmatic")


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    # SIGTERM (a cluster's scancel, a `kill`) raises SystemExit, so that the run's files
    # are written on the way out like on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        run_experiment(cfg, HydraConfig.get().runtime.output_dir)
    except (ConfigError, ModelNotFoundError) as err:
        # A user's mistake, not a bug: one line saying what to fix, no traceback.
        log.error("%s: %s", type(err).__name__, err)
        sys.exit(2)


if __name__ == "__main__":
    main()
