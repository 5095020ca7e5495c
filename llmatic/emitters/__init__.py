"""pyribs emitters: LLM mutation, crossover and initial phase; classic operators and baselines."""

from llmatic.emitters._baselines import (
    PARENT_POOLS,
    ClassicMutationEmitter,
    LocalSearchEmitter,
    RandomSearchEmitter,
    RegularizedEvolutionEmitter,
    elite_ids,
)
from llmatic.emitters._crossover import LLMCrossoverEmitter
from llmatic.emitters._initial import LLMInitialEmitter
from llmatic.emitters._llm_emitter import (
    TEMPERATURE_SCHEDULES,
    CuriosityRule,
    LLMEmitterBase,
    TemperatureRule,
)
from llmatic.emitters._mutation import FEEDBACK_SOURCES, LLMMutationEmitter
from llmatic.emitters._state import CheckpointableEmitter

__all__ = [
    "FEEDBACK_SOURCES",
    "PARENT_POOLS",
    "CheckpointableEmitter",
    "ClassicMutationEmitter",
    "CuriosityRule",
    "LLMCrossoverEmitter",
    "LLMEmitterBase",
    "LLMInitialEmitter",
    "LLMMutationEmitter",
    "LocalSearchEmitter",
    "RandomSearchEmitter",
    "RegularizedEvolutionEmitter",
    "TEMPERATURE_SCHEDULES",
    "TemperatureRule",
    "elite_ids",
]
