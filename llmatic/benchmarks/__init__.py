"""Benchmarks: what an architecture is worth (trained on digits, or looked up in NB201)."""

from llmatic.benchmarks.base import ArchEvaluation, Benchmark

__all__ = ["ArchEvaluation", "Benchmark"]
