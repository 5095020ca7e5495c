"""Search spaces behind one seam (:class:`SearchSpace`): today the NAS-Bench-201 cell space."""

from llmatic.spaces.base import SandboxCall, SearchSpace
from llmatic.spaces.nb201 import Nb201Space

__all__ = ["Nb201Space", "SandboxCall", "SearchSpace"]
