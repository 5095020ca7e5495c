"""Run plumbing: from a Hydra config to a finished run directory.

- :mod:`llmatic.run.config`: the config checks and the config that resumes a run;
- :mod:`llmatic.run.build`: the parts a config names (space, LLM, benchmark, emitters);
- :mod:`llmatic.run.experiment`: :func:`run_experiment`, the run itself (files, resume,
  checkpoints, the search loop).
"""

from llmatic.run.config import ConfigError, resume_config, validate_config
from llmatic.run.experiment import run_experiment

__all__ = ["ConfigError", "resume_config", "run_experiment", "validate_config"]
