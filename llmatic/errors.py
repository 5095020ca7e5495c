"""Why a candidate failed: one exception type whose ``kind`` is a stable, short label.

The kinds are recorded in ``candidates.jsonl`` and counted in ``summary.json``, so a user
can see at a glance whether a search loses its candidates to syntax errors, to networks
outside the search space, or to timeouts.
"""

from __future__ import annotations

#: Every failure kind, with what it means.
FAILURE_KINDS: dict[str, str] = {
    "no_code": "the completion holds no Python class definition",
    "syntax_error": "the code does not parse",
    "forbidden_code": "the code uses a construct no network needs (an import, file or process "
    "access, introspection); checked before it runs",
    "no_module": "the code defines no torch.nn.Module subclass of the expected name",
    "build_error": "constructing the network raised an exception",
    "out_of_space": "the network is not in the benchmark's search space",
    "forward_error": "the forward pass raised an exception",
    "wrong_output_shape": "the forward pass returned a tensor of the wrong shape",
    "training_error": "training raised an exception or diverged",
    "timeout": "the sandboxed process ran past its wall-clock limit",
    "out_of_memory": "the sandboxed process ran out of its memory limit",
    "crashed": "the sandboxed process died (signal or abnormal exit)",
    "exception": "an unexpected exception in the sandboxed process",
    "bad_result": "the sandboxed process sent back a value its target never returns "
    "(malformed or forged by the candidate's code)",
    "worker_lost": "the worker evaluating it was lost twice (the sandbox's server process, a "
    "Ray actor or its node died); the call was retried once on a fresh worker",
}

#: Failure kinds that blame the machine or the setup rather than the candidate's code: the
#: sandboxed process ran out of time or memory or died, or trusted code (the probe, the
#: training loop, the benchmark) raised. One candidate may hit one by bad luck; every
#: candidate hitting the same one means a limit, a data file or a device is wrong
#: (:mod:`llmatic.search.fail_fast` stops such a run).
ENVIRONMENT_KINDS: frozenset[str] = frozenset(
    {"timeout", "out_of_memory", "crashed", "exception", "training_error", "worker_lost"}
)

#: Failure kinds found by reading the completion, before any of its code runs: they say
#: nothing about the sandbox or the benchmark.
STATIC_KINDS: frozenset[str] = frozenset({"no_code", "syntax_error", "forbidden_code"})


class CandidateError(Exception):
    """A candidate network failed for a reason that is its own fault, not ours.

    Args:
        kind: One of :data:`FAILURE_KINDS`.
        message: One line saying what exactly went wrong.
    """

    def __init__(self, kind: str, message: str) -> None:
        if kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {kind!r}; use one of {list(FAILURE_KINDS)}")
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class ConfigError(ValueError):
    """A config value is wrong; the message says which and how to fix it."""
