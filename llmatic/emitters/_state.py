"""What a checkpoint saves of an emitter: all of its attributes but the search's other parts."""

from __future__ import annotations


class CheckpointableEmitter:
    """Mixin: ``state_dict`` / ``load_state_dict`` for an emitter.

    The state is every instance attribute (random generator, counters, population,
    rules, ...) except :attr:`attached`, the parts of the search it refers to (archives,
    store, LLM, prompter), which a resumed run rebuilds and checkpoints save on their own.
    A new attribute is saved without further ado; it must pickle.
    """

    #: Attributes that refer to other parts of the search; not part of the state.
    attached: tuple[str, ...] = ("_archive",)

    def state_dict(self) -> dict:
        return {name: value for name, value in vars(self).items() if name not in self.attached}

    def load_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict`.

        Raises:
            ValueError: The state has other attributes than this emitter (another version).
        """
        differ = set(state) ^ set(self.state_dict())
        if differ:
            raise ValueError(
                f"the checkpoint's {type(self).__name__} state differs in {sorted(differ)} "
                "(written by another version of llmatic?)"
            )
        vars(self).update(state)
