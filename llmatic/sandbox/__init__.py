"""Running trusted functions on untrusted input in isolated, limited child processes.

:class:`Sandbox` keeps a zygote process that has imported torch once and forks a fresh
child per call; see :mod:`llmatic.sandbox._sandbox` for the parent's side,
:mod:`llmatic.sandbox._zygote` for the server and :mod:`llmatic.sandbox._child` for what
the child does before it calls the target, :mod:`llmatic.sandbox._confine` for how it is
confined, and :mod:`llmatic.sandbox.static_check` for the check that generated code
passes before it runs.
"""

from llmatic.sandbox._child import attached
from llmatic.sandbox._sandbox import Sandbox
from llmatic.sandbox._types import (
    SandboxIsolation,
    SandboxLimits,
    SandboxResult,
    SandboxSetupError,
)
from llmatic.sandbox.static_check import check_code, ensure_allowed

__all__ = [
    "Sandbox",
    "SandboxIsolation",
    "SandboxLimits",
    "SandboxResult",
    "SandboxSetupError",
    "attached",
    "check_code",
    "ensure_allowed",
]
