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

In a sweep (``-m``, any ``hydra/launcher``; docs/cluster.md) a job that fails this way
raises :class:`JobFailed` instead, so that the other jobs go on (the sweep then exits 1),
and a job whose directory holds a checkpoint already (a requeued SLURM job, the same sweep
launched again) continues that run as ``resume=`` would.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from llmatic.checkpoint import CHECKPOINT_FILE, CheckpointError
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


class JobFailed(Exception):
    """One job of a sweep stopped with exit status ``status`` (the line logged before says why).

    Hydra's launchers record an exception as that job's failure and run the rest of the
    sweep; a ``SystemExit`` would end the sweep (the joblib launcher cancels the jobs still
    running, the basic one never starts the next).
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)  # both in args: picklable back to the launcher
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return f"exit status {self.status}: {self.message}"


def _stop(status: int, err: Exception) -> NoReturn:
    """Exit with ``status``; in a sweep, fail this job only."""
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        raise JobFailed(status, f"{type(err).__name__}: {err}") from None
    sys.exit(status)


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    # SIGTERM (a cluster's scancel, a `kill`) raises SystemExit, so that the run's files
    # are written on the way out like on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    hydra_cfg = HydraConfig.get()
    run_dir = cfg.resume or hydra_cfg.runtime.output_dir
    resume = cfg.resume
    if (
        not resume
        and hydra_cfg.mode == RunMode.MULTIRUN
        and Path(run_dir, CHECKPOINT_FILE).is_file()
    ):
        # A sweep's job run again in its own directory: a SLURM job requeued by submitit
        # (preemption), or the same sweep launched again with the same hydra.sweep.dir.
        # Continue the run (or find it finished) instead of starting over on its files.
        log.info("%s holds this job's run already: continuing it (resume=%s)", run_dir, run_dir)
        resume = run_dir
    try:
        if resume:
            run_cfg = resume_config(resume, cfg, hydra_cfg.overrides.task)
            run_experiment(run_cfg, resume, resume=True)
        else:
            run_experiment(cfg, run_dir)
    except (ConfigError, ModelNotFoundError, CheckpointError, SandboxSetupError) as err:
        # A user's mistake, not a bug: one line saying what to fix, no traceback.
        log.error("%s: %s", type(err).__name__, err)
        _stop(2, err)
    except LLMServerError as err:
        # The server went away or is too slow; the finished iterations are checkpointed.
        log.error(
            "%s: %s. The run so far is saved: check the server (or raise llm.timeout_s), "
            "then continue with resume=%s",
            type(err).__name__,
            err,
            run_dir,
        )
        _stop(3, err)
    except SearchAborted as err:
        # Every evaluation would fail the same way: stop now, not after the budget.
        log.error(
            "%s: %s. The run so far is in %s (candidates.jsonl, metrics.csv, checkpoint.pkl); "
            "fix the setup and start a new run",
            type(err).__name__,
            err,
            run_dir,
        )
        _stop(4, err)


if __name__ == "__main__":
    main()
