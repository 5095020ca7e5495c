"""A grammar of network code, so that a small model writes valid free-form networks.

The language is the body of a ``class Net(nn.Module)`` written in one plain style: convolution
blocks (each an ``nn.Conv2d`` with an optional ``nn.BatchNorm2d`` and an optional 2x2 max or
average pooling), an optional global average pooling, then linear layers (each hidden one with
an optional ``nn.Dropout``), and a ``forward`` that calls them in order, with the activation
of each layer and, where the shape allows it, a residual addition. LLMatic's seed network is
in it, written exactly as :func:`llmatic.spaces.freeform.seed_code` writes it.

The model decides every layer and size; the grammar only writes what consistency forces:
the input channels of each convolution and normalisation (those of the layer before), the
``padding`` that keeps a kernel's output the size of its input, the input features of each
linear layer (measured through the pooling so far), the last layer's ``num_classes``, and
the ``forward`` calls that follow from the layers declared. So every text of the language
builds and returns ``(N, num_classes)`` logits.

A text reads back into a :class:`NetworkSpec` (:func:`parse_spec`), and a spec writes the
text (:func:`write_spec`); :func:`mutate_spec` is the classic mutation over specs that the
LLM's operators are measured against.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from llmatic.llm.grammar import Choice, parse, write

#: The activations the model may apply, by their call in ``forward``.
ACTIVATIONS = {"relu": "F.relu(", "gelu": "F.gelu("}
#: The pooling layers a convolution block may end with.
POOLS = {"max": "nn.MaxPool2d(2)", "avg": "nn.AvgPool2d(2)"}


@dataclass(frozen=True)
class ConvBlock:
    """Conv2d -> [BatchNorm2d] -> [activation] -> [2x2 pooling], maybe added to its input.

    Attributes:
        channels: Output channels.
        kernel: Square kernel size (odd; padded to keep the spatial size).
        norm: Whether a ``BatchNorm2d`` follows the convolution.
        pool: ``"max"``, ``"avg"`` or None (halves height and width).
        activation: ``"relu"`` or ``"gelu"``.
        residual: Whether the block's output is added to its input (only where the block
            keeps the shape: same channels, no pooling).
    """

    channels: int
    kernel: int = 3
    norm: bool = False
    pool: str | None = None
    activation: str = "relu"
    residual: bool = False


@dataclass(frozen=True)
class HiddenLayer:
    """Linear -> [activation] -> [Dropout]: one hidden layer of the classifier."""

    features: int
    dropout: float | None = None
    activation: str = "relu"


@dataclass(frozen=True)
class NetworkSpec:
    """A network of the grammar: convolution blocks, global pooling, hidden layers.

    The last linear layer (to ``num_classes``) is implied.
    """

    convs: tuple[ConvBlock, ...] = ()
    global_pool: bool = False
    hidden: tuple[HiddenLayer, ...] = ()


@dataclass(frozen=True)
class NetworkGrammar:
    """The grammar's sizes and limits, for one benchmark's input and classes.

    Args:
        input_shape: One input, ``(C, H, W)``.
        num_classes: Logits per input.
        widths: The output channels a convolution may take.
        narrow_widths: Widths in the language that a sample never chooses anew: only a
            layer that keeps its parent's may have them (LLMatic's seed has a 1-channel
            convolution; a new 1- or 2-channel bottleneck behind a ReLU often leaves a
            network that does not learn at all).
        kernels: Odd kernel sizes.
        features: The widths a hidden linear layer may take.
        dropouts: The dropout probabilities.
        max_convs: Most convolution blocks.
        max_hidden: Most hidden linear layers.
    """

    input_shape: tuple[int, int, int]
    num_classes: int
    widths: tuple[int, ...] = (4, 8, 16, 32, 64, 128)
    narrow_widths: tuple[int, ...] = (1, 2)
    kernels: tuple[int, ...] = (1, 3, 5)
    features: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    dropouts: tuple[float, ...] = (0.1, 0.25, 0.5)
    max_convs: int = 6
    max_hidden: int = 2
    _features: tuple[int, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ValueError(f"input_shape must be (C, H, W), got {self.input_shape}")
        if any(k % 2 == 0 for k in self.kernels):
            raise ValueError(f"kernels must be odd (same padding), got {self.kernels}")
        # A hidden width equal to num_classes would read as the last layer.
        object.__setattr__(
            self, "_features", tuple(n for n in self.features if n != self.num_classes)
        )

    def program(
        self, reference: NetworkSpec | None = None, max_changes: int | None = None
    ) -> Generator[str | Choice, int, NetworkSpec]:
        """The grammar (see :mod:`llmatic.llm.grammar`): writes a class body.

        Args:
            reference: The parent of a sample: a convolution may keep its width even if
                narrow (``narrow_widths``), and with ``max_changes`` the texts are those
                at most ``max_changes`` changes from it (see :class:`TrustRegion`). None
                for the whole language (to read any text of it back).
            max_changes: The trust region's size; None for no limit.
        """
        region = None
        if reference is not None and max_changes is not None:
            region = TrustRegion(reference, max_changes)

        def widths(n: int) -> tuple[int, ...]:
            """The widths convolution ``n`` may take."""
            if reference is None:
                return (*self.narrow_widths, *self.widths)
            kept = reference.convs[n - 1].channels if n <= len(reference.convs) else None
            return (kept, *self.widths) if kept in self.narrow_widths else self.widths

        def choose(name: str, n: int, texts: Sequence[str], values: Sequence[Any]):
            """Asks one choice (within the trust region); returns the value taken."""
            options = list(zip(texts, values, strict=True))
            if region is not None:
                options = region.allowed(name, n, options)
            k = yield Choice(name, n, tuple(t for t, _ in options), tuple(v for _, v in options))
            if region is not None:
                region.took(name, n, options[k][1])
            return options[k][1]

        channels, height, width = self.input_shape
        yield "    def __init__(self):\n        super().__init__()\n"
        convs: list[dict[str, Any]] = []
        global_pool = False
        while True:  # convolution blocks, then maybe global pooling, then the classifier
            n = len(convs) + 1
            kinds, texts = [], []
            if n <= self.max_convs and not global_pool:
                kinds.append("conv")
                texts.append(f"        self.conv{n} = nn.Conv2d({channels}, ")
            if convs and not global_pool and height * width > 1:
                kinds.append("global_pool")
                texts.append("        self.gap = nn.AdaptiveAvgPool2d(1)\n")
            kinds.append("linear")
            texts.append(f"        self.fc1 = nn.Linear({channels * height * width}, ")
            if len(kinds) == 1:  # nothing to decide (after global pooling, or past the limit)
                yield texts[0]
                break
            kind = yield from choose("layer", n, texts, kinds)
            if kind == "linear":
                break
            if kind == "global_pool":
                global_pool, height, width = True, 1, 1
                continue
            block: dict[str, Any] = {"in": channels}
            offered = widths(n)
            block["channels"] = yield from choose(
                "channels", n, [f"{c}, " for c in offered], offered
            )
            kernel_texts = tuple(
                f"{k})\n" if k == 1 else f"{k}, padding={k // 2})\n" for k in self.kernels
            )
            block["kernel"] = yield from choose("kernel", n, kernel_texts, self.kernels)
            channels = block["channels"]
            norm_line = f"        self.bn{n} = nn.BatchNorm2d({channels})\n"
            block["norm"] = yield from choose("norm", n, ("", norm_line), (False, True))
            block["pool"] = None
            if min(height, width) >= 2:
                pools = (None, *POOLS)
                texts = ("", *(f"        self.pool{n} = {POOLS[p]}\n" for p in POOLS))
                block["pool"] = yield from choose("pool", n, texts, pools)
                if block["pool"]:
                    height, width = height // 2, width // 2
            convs.append(block)

        hidden: list[dict[str, Any]] = []
        while True:  # the linear layers; the line's head "self.fcN = nn.Linear(IN, " is written
            n = len(hidden) + 1
            sizes = self._features if len(hidden) < self.max_hidden else ()
            values = (*sizes, None)  # None: the last layer
            texts = (*(f"{s})\n" for s in sizes), f"{self.num_classes})\n")
            size = yield from choose("features", n, texts, values)
            if size is None:
                break
            layer: dict[str, Any] = {"features": size}
            drops = (None, *self.dropouts)
            texts = ("", *(f"        self.drop{n} = nn.Dropout({p})\n" for p in self.dropouts))
            layer["dropout"] = yield from choose("dropout", n, texts, drops)
            hidden.append(layer)
            yield f"        self.fc{n + 1} = nn.Linear({size}, "

        yield "\n    def forward(self, x):\n"
        # Every layer but the last has an activation: without one, two layers in a row
        # are one linear map (a choice a small model makes by copying ``x = self.fc1(x)``).
        activations = tuple(ACTIVATIONS)
        activation_texts = tuple(ACTIVATIONS.values())
        for n, block in enumerate(convs, start=1):
            yield "        x = "
            block["residual"] = False
            if block["in"] == block["channels"] and block["pool"] is None:
                block["residual"] = yield from choose("residual", n, ("", "x + "), (False, True))
            closing = ")"
            if block["pool"]:
                yield f"self.pool{n}("
                closing += ")"
            activation = yield from choose("activation", n, activation_texts, activations)
            block["activation"] = activation
            closing += ")"
            if block["norm"]:
                yield f"self.bn{n}("
                closing += ")"
            yield f"self.conv{n}(x{closing}\n"
        yield (
            "        x = torch.flatten(self.gap(x), 1)\n"
            if global_pool
            else "        x = torch.flatten(x, 1)\n"
        )
        for n, layer in enumerate(hidden, start=1):
            yield "        x = "
            if layer["dropout"] is not None:
                yield f"self.drop{n}("
            activation = yield from choose("fc_activation", n, activation_texts, activations)
            layer["activation"] = activation
            closing = ")" * (2 + (layer["dropout"] is not None))
            yield f"self.fc{n}(x{closing}\n"
        yield f"        x = self.fc{len(hidden) + 1}(x)\n        return x\n"
        return NetworkSpec(
            convs=tuple(
                ConvBlock(**{k: v for k, v in block.items() if k != "in"}) for block in convs
            ),
            global_pool=global_pool,
            hidden=tuple(HiddenLayer(**layer) for layer in hidden),
        )


def parse_spec(grammar: NetworkGrammar, body: str) -> NetworkSpec:
    """The spec of a class body written in the grammar's language.

    Raises:
        ValueError: ``body`` is not in the language.
    """
    return parse(grammar.program, body)


def write_spec(grammar: NetworkGrammar, spec: NetworkSpec) -> str:
    """The class body of ``spec``, in the grammar's style.

    A setting that the grammar does not offer at its place (a residual addition where the
    shape changes, pooling below 2x2, a width not in the grammar's lists, more layers than
    its limits) is replaced by the nearest one it offers, so that any spec writes a network
    that builds.
    """

    def decide(choice: Choice) -> int:
        wanted = _wanted(spec, choice.name, choice.index)
        values = [choice.value(k) for k in range(len(choice.options))]
        if wanted in values:
            return values.index(wanted)
        if isinstance(wanted, int | float) and not isinstance(wanted, bool):
            numbers = [
                (abs(v - wanted), k)
                for k, v in enumerate(values)
                if isinstance(v, int | float) and not isinstance(v, bool)
            ]
            if numbers:
                return min(numbers)[1]
        for fallback in (None, False, "linear"):  # nothing, or on to the classifier
            if fallback in values:
                return values.index(fallback)
        return 0

    return write(grammar.program, decide)[0]


def _wanted(spec: NetworkSpec, name: str, n: int) -> Any:
    """What ``spec`` says for choice ``name`` of layer ``n``.

    Raises:
        IndexError: ``spec`` has no layer ``n`` of that kind.
    """
    if name == "layer":
        if n <= len(spec.convs):
            return "conv"
        return "global_pool" if spec.global_pool and n == len(spec.convs) + 1 else "linear"
    if name == "features":
        return spec.hidden[n - 1].features if n <= len(spec.hidden) else None
    if n < 1:
        raise IndexError(n)
    if name in ("dropout", "fc_activation"):
        return getattr(spec.hidden[n - 1], "activation" if name == "fc_activation" else name)
    return getattr(spec.convs[n - 1], name)


class TrustRegion:
    """Keeps a sample within ``max_changes`` changes of a reference network (its parent).

    A choice is aligned with the parent's by its name and layer number. Taking another
    value than the parent's costs 1, except that stopping the convolution blocks or the
    hidden layers early costs one per layer of the parent's left out (dropping all three
    convolutions of a parent is three changes, not one). Choices the parent has no
    counterpart for (the settings of a layer the sample adds) are free: adding the layer
    was the change. Once the changes are spent, every aligned choice takes the parent's
    value; where the grammar does not offer it there (pooling below 2x2), any option is
    taken. This is the NAS-Bench-201 trust region (``search.max_changes``) for networks
    of any shape.

    Args:
        reference: The parent's spec.
        max_changes: The most changes a sample may make (>= 0).
    """

    def __init__(self, reference: NetworkSpec, max_changes: int) -> None:
        if max_changes < 0:
            raise ValueError(f"max_changes must be >= 0, got {max_changes}")
        self.reference = reference
        self.left = max_changes

    def cost(self, name: str, n: int, value: Any) -> int:
        """What taking ``value`` for choice ``name`` of layer ``n`` costs."""
        try:
            parent = _wanted(self.reference, name, n)
        except IndexError:
            return 0
        if value == parent:
            return 0
        if name == "layer" and parent == "conv":
            return len(self.reference.convs) - n + 1
        if name == "features" and value is None:
            return len(self.reference.hidden) - n + 1
        return 1

    def allowed(self, name: str, n: int, options: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        """The options (text, value) whose cost the changes left can pay (all if none)."""
        kept = [(t, v) for t, v in options if self.cost(name, n, v) <= self.left]
        return kept or options

    def took(self, name: str, n: int, value: Any) -> None:
        """Spends the cost of the value taken."""
        self.left = max(0, self.left - self.cost(name, n, value))


def mutate_spec(
    grammar: NetworkGrammar, spec: NetworkSpec, *, rng: np.random.Generator, tries: int = 32
) -> NetworkSpec:
    """A classic mutation: one random edit of one layer or setting of ``spec``.

    The edit is drawn uniformly among: add, remove or resize a convolution block; change
    its kernel, normalisation, pooling, activation or residual addition; toggle global
    pooling; add, remove or resize a hidden layer; change its dropout or activation. An
    edit that writes the same text as ``spec`` (one the grammar cannot take at its place)
    is drawn again, up to ``tries`` times.

    Returns:
        The mutated spec, as the grammar writes it back (so it is in the language).
    """
    before = write_spec(grammar, spec)
    for _ in range(tries):
        child = parse_spec(grammar, write_spec(grammar, _edit(grammar, spec, rng)))
        if write_spec(grammar, child) != before:
            return child
    return spec


def _edit(grammar: NetworkGrammar, spec: NetworkSpec, rng: np.random.Generator) -> NetworkSpec:
    convs, hidden = list(spec.convs), list(spec.hidden)

    def pick(options: Sequence[Any], *current: Any) -> Any:
        """A random option, other than ``current`` if given and there is another."""
        others = [o for o in options if o not in current]
        return others[int(rng.integers(len(others)))] if others else current[0]

    edit = pick(
        ["add_conv", "remove_conv", "conv", "global_pool", "add_hidden", "remove_hidden", "hidden"]
    )
    if edit == "add_conv" or (edit in ("remove_conv", "conv") and not convs):
        at = int(rng.integers(len(convs) + 1))
        width = convs[at - 1].channels if at else pick(grammar.widths)
        convs.insert(at, ConvBlock(channels=width, kernel=3))
    elif edit == "remove_conv":
        convs.pop(int(rng.integers(len(convs))))
    elif edit == "conv":
        k = int(rng.integers(len(convs)))
        block = convs[k]
        setting = pick(["channels", "kernel", "norm", "pool", "activation", "residual"])
        options = {
            "channels": grammar.widths,
            "kernel": grammar.kernels,
            "norm": (False, True),
            "pool": (None, *POOLS),
            "activation": tuple(ACTIVATIONS),
            "residual": (False, True),
        }[setting]
        convs[k] = replace(block, **{setting: pick(options, getattr(block, setting))})
    elif edit == "global_pool":
        return replace(spec, global_pool=not spec.global_pool)
    elif edit == "add_hidden" or (edit in ("remove_hidden", "hidden") and not hidden):
        hidden.insert(
            int(rng.integers(len(hidden) + 1)), HiddenLayer(features=pick(grammar.features))
        )
    elif edit == "remove_hidden":
        hidden.pop(int(rng.integers(len(hidden))))
    else:
        k = int(rng.integers(len(hidden)))
        layer = hidden[k]
        setting = pick(["features", "dropout", "activation"])
        options = {
            "features": grammar.features,
            "dropout": (None, *grammar.dropouts),
            "activation": tuple(ACTIVATIONS),
        }[setting]
        hidden[k] = replace(layer, **{setting: pick(options, getattr(layer, setting))})
    return replace(spec, convs=tuple(convs), hidden=tuple(hidden))
