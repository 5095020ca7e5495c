"""Run one search: ``python -m experiments.run [+exp=NAME] [key=value ...]``.

Hydra composes ``conf/config.yaml`` (and ``conf/exp/NAME.yaml``); the run's files go to
Hydra's output directory. ``-m seed=0,1,2`` sweeps. ``resume=RUN_DIR`` continues a killed
run from its checkpoint, with the run's own config (Hydra's log then goes to RUN_DIR too).

Exit status: 0 the run finished (or was finished already); 2 a config error, one line
(``ConfigError``, ``ModelNotFoundError``, ``CheckpointError``); 3 the LLM server failed
mid-run (``LLMServerError``; ``resume=RUN_DIR`` continues); 4 the setup is broken: the
seed network failed, or the first candidates all failed the same way (``SearchAborted``,
see ``llmatic/search/fail_fast.py``); 1 anything else (a bug: Hydra prints the traceback).
Whatever stops it, the run's files so far stay in its directory.
"""

from __future__ import annotations

import logging
import signal
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from llmatic.checkpoint import CheckpointError
from llmatic.llm.models import ModelNotFoundError
from llmatic.llm.openai_backend import LLMServerError
from llmatic.run import ConfigError, resume_config, run_experiment
from llmatic.sandbox import SandboxSetupError
from llmatic.search.fail_fast import SearchAborted

log = logging.getLogger("llmatic")

# conf/config.yaml: with resume=RUN_DIR, Hydra's output directory is RUN_DIR (its run.log
# goes on there) and the resuming command line's .hydra/ files go to .hydra/resume/.
OmegaConf.register_new_resolver(
    "llmatic.resume_or", lambda resume, default: resume or default, replace=True
)
OmegaConf.register_new_resolver(
    "llmatic.hydra_subdir", lambda resume: ".hydra/resume" if resume else ".hydra", replace=True
)


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    # SIGTERM (a cluster's scancel, a `kill`) raises SystemExit, so that the run's files
    # are written on the way out like on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    run_dir = cfg.resume or HydraConfig.get().runtime.output_dir
    try:
        if cfg.resume:
            run_cfg = resume_config(cfg.resume, cfg, HydraConfig.get().overrides.task)
            run_experiment(run_cfg, cfg.resume, resume=True)
        else:
            run_experiment(cfg, run_dir)
    except (ConfigError, ModelNotFoundError, CheckpointError, SandboxSetupError) as err:
        # A user's mistake, not a bug: one line saying what to fix, no traceback.
        log.error("%s: %s", type(err).__name__, err)
        sys.exit(2)
    except LLMServerError as err:
        # The server went away or is too slow; the finished iterations are checkpointed.
        log.error(
            "%s: %s. The run so far is saved: check the server (or raise llm.timeout_s), "
            "then continue with resume=%s",
            type(err).__name__,
            err,
            run_dir,
        )
        sys.exit(3)
    except SearchAborted as err:
        # Every evaluation would fail the same way: stop now, not after the budget.
        log.error(
            "%s: %s. The run so far is in %s (candidates.jsonl, metrics.csv, checkpoint.pkl); "
            "fix the setup and start a new run",
            type(err).__name__,
            err,
            run_dir,
        )
        sys.exit(4)


if __name__ == "__main__":
    main()
