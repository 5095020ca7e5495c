"""Running trusted functions on untrusted input in isolated, limited child processes.

:class:`Sandbox` keeps a zygote process that has imported torch once and forks a fresh
child per call; see :mod:`llmatic.sandbox._sandbox` for the parent's side,
:mod:`llmatic.sandbox._zygote` for the server and :mod:`llmatic.sandbox._child` for what
the child does before it calls the target.
"""

from llmatic.sandbox._sandbox import Sandbox
from llmatic.sandbox._types import SandboxLimits, SandboxResult

__all__ = ["Sandbox", "SandboxLimits", "SandboxResult"]
