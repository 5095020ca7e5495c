"""Measures of networks for the network archive (see :mod:`llmatic.measures._network`)."""

from llmatic.measures._network import (
    NetworkMeasures,
    count_flops,
    max_width,
    measure_network,
    weight_layer_depth,
)

__all__ = ["NetworkMeasures", "count_flops", "max_width", "measure_network", "weight_layer_depth"]
