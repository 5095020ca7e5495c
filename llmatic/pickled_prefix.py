"""Pickling a growing list whose first items never change, without pickling them again.

A checkpoint after every iteration pickles the run's candidates and metrics: lists that
only grow, and whose old items are final. Pickled whole each time, they make a run of
n iterations cost O(n^2) (REA, one candidate per iteration, spent most of a 2,000-
evaluation run on it). :class:`PickledPrefix` pickles the final items once, in chunks,
and hands out the same bytes every time after.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any


class PickledPrefix:
    """The final prefix of a growing list, pickled once, ``chunk`` items at a time.

    Args:
        chunk: Items per pickled chunk: the last ``< chunk`` final items stay unpickled,
            so that the chunks are few and large (pickling a list of bytes objects costs
            per object).
    """

    def __init__(self, *, chunk: int = 256) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.chunk = chunk
        self.chunks: list[bytes] = []
        self.count = 0  # items in the chunks

    def split(self, items: Sequence[Any], final: int) -> tuple[list[bytes], list[Any]]:
        """``items`` as (pickled chunks of its first items, the rest as they are).

        Args:
            items: The list; its first ``final`` items never change again.
            final: How many of its first items are final.
        """
        while self.count + self.chunk <= final:
            part = list(items[self.count : self.count + self.chunk])
            self.chunks.append(pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL))
            self.count += self.chunk
        return list(self.chunks), list(items[self.count :])

    def restore(self, chunks: Sequence[bytes], rest: Sequence[Any]) -> list[Any]:
        """The whole list from :meth:`split`'s parts; this object goes on from them."""
        items = [item for chunk in chunks for item in pickle.loads(chunk)]
        self.chunks, self.count = list(chunks), len(items)
        return items + list(rest)
