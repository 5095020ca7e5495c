"""pyribs emitters: LLM mutation, crossover and initial phase; random search and REA baselines."""

from llmatic.emitters._baselines import RandomSearchEmitter, RegularizedEvolutionEmitter
from llmatic.emitters._crossover import LLMCrossoverEmitter
from llmatic.emitters._initial import LLMInitialEmitter
from llmatic.emitters._llm_emitter import CuriosityRule, LLMEmitterBase, TemperatureRule
from llmatic.emitters._mutation import LLMMutationEmitter
from llmatic.emitters._state import CheckpointableEmitter

__all__ = [
    "CheckpointableEmitter",
    "CuriosityRule",
    "LLMCrossoverEmitter",
    "LLMEmitterBase",
    "LLMInitialEmitter",
    "LLMMutationEmitter",
    "RandomSearchEmitter",
    "RegularizedEvolutionEmitter",
    "TemperatureRule",
]
