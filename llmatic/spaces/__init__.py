"""Search spaces behind one seam (:class:`SearchSpace`): NB201 cells and free-form networks."""

from llmatic.spaces.base import Proposal, SandboxCall, SearchSpace
from llmatic.spaces.freeform import FreeformSpace
from llmatic.spaces.nb201 import Nb201Space

__all__ = ["FreeformSpace", "Nb201Space", "Proposal", "SandboxCall", "SearchSpace"]
