"""Architecture measures of an instantiated network: FLOPs, depth, width, parameters.

Definitions (all computed for one forward pass of a batch of ONE input):

- **FLOPs**: floating-point operations counted by ``torch.utils.flop_counter``
  (``FlopCounterMode``): 2 per multiply-accumulate of convolutions and matrix products;
  element-wise ops, pooling and normalisation count 0. Unit: FLOPs (not MACs).
- **depth**: the largest number of *weight layers* (convolutions and linear layers, i.e.
  autograd nodes of type convolution/matmul/addmm that involve a parameter) on any path
  from the input to the output, read off the autograd graph. A skip connection therefore
  does not add depth; ten stacked convolutions give depth 10. Unit: layers.
- **width**: the largest output width of any weight layer: ``out_channels`` of a
  convolution, ``out_features`` of a linear layer. Unit: channels / features.
- **width-to-depth ratio**: ``width / depth`` (0 when depth is 0).
- **parameters**: number of trainable scalars.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch._dynamo  # noqa: F401  (see below)
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

# FlopCounterMode imports torch._dynamo (800 modules, ~1 s) on first use. Importing it
# here lets the sandbox's zygote pay that once instead of every evaluation child.

# Autograd node names of the operations that apply a weight matrix or kernel.
_WEIGHT_OPS = ("Convolution", "Addmm", "Mm", "Bmm", "Linear", "Matmul")


@dataclass(frozen=True)
class NetworkMeasures:
    """Measures of one network; see the module docstring for exact definitions."""

    flops: float
    depth: int
    width: int
    params: int

    @property
    def width_to_depth(self) -> float:
        return self.width / self.depth if self.depth else 0.0

    @property
    def log10_flops(self) -> float:
        return math.log10(max(self.flops, 1.0))

    def as_dict(self) -> dict[str, float]:
        return {
            **asdict(self),
            "width_to_depth": self.width_to_depth,
            "log10_flops": self.log10_flops,
        }


def count_flops(model: nn.Module, example: torch.Tensor) -> float:
    """FLOPs of ``model(example)``; ``example`` is a batch of one, e.g. ``(1, 3, 32, 32)``."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(example)
    return float(counter.get_total_flops())


def weight_layer_depth(output: torch.Tensor) -> int:
    """Longest chain of weight layers in the autograd graph that produced ``output``."""
    memo: dict[object, int] = {}
    # Iterative post-order DFS: deep networks would overflow Python's recursion limit.
    stack = [(output.grad_fn, False)]
    while stack:
        fn, expanded = stack.pop()
        if fn is None or (fn in memo and not expanded):
            continue
        parents = [p for p, _ in fn.next_functions if p is not None]
        if not expanded:
            stack.append((fn, True))
            stack.extend((p, False) for p in parents if p not in memo)
            continue
        own = 1 if _is_weight_op(fn) else 0
        memo[fn] = own + max((memo.get(p, 0) for p in parents), default=0)
    return memo.get(output.grad_fn, 0)


def _is_weight_op(fn: object) -> bool:
    name = type(fn).__name__
    if not name.startswith(_WEIGHT_OPS):
        return False
    # A matmul between two activations (attention) is not a weight layer.
    return any(_reaches_parameter(p) for p, _ in fn.next_functions if p is not None)


def _reaches_parameter(fn: object) -> bool:
    # Parameters enter the graph through AccumulateGrad, possibly behind a transpose (linear).
    for _ in range(3):
        if type(fn).__name__ == "AccumulateGrad":
            return True
        nexts = [p for p, _ in getattr(fn, "next_functions", ()) if p is not None]
        if len(nexts) != 1:
            return False
        fn = nexts[0]
    return False


def max_width(model: nn.Module) -> int:
    """Largest ``out_channels`` / ``out_features`` over the model's conv and linear layers."""
    widths = [
        m.out_channels if isinstance(m, nn.modules.conv._ConvNd) else m.out_features
        for m in model.modules()
        if isinstance(m, nn.modules.conv._ConvNd | nn.Linear)
    ]
    return max(widths, default=0)


def measure_network(model: nn.Module, input_shape: tuple[int, ...]) -> NetworkMeasures:
    """All measures of ``model`` for one input of ``input_shape`` (without batch dim).

    The model is put in eval mode for the measurement and restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        example = torch.zeros((1, *input_shape), device=device)
        flops = count_flops(model, example)
        with torch.enable_grad():
            output = model(example)
            depth = weight_layer_depth(output)
    finally:
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return NetworkMeasures(flops=flops, depth=depth, width=max_width(model), params=params)
