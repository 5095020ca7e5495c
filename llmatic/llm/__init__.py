"""The LLM layer: backends that sample code, and extraction of a class from their output.

``TransformersLLM`` is imported lazily: importing torch and transformers takes seconds, and
code that only extracts or parses candidates (tests, the sandbox) does not need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmatic.llm.base import Generation, GenerationRequest, LLMBackend
from llmatic.llm.extraction import extract_class_code
from llmatic.llm.models import (
    EMBEDDED_MODEL,
    ModelNotFoundError,
    default_cache_dir,
    resolve_model,
)

if TYPE_CHECKING:
    from llmatic.llm.transformers_backend import TransformersLLM

__all__ = [
    "EMBEDDED_MODEL",
    "Generation",
    "GenerationRequest",
    "LLMBackend",
    "ModelNotFoundError",
    "TransformersLLM",
    "default_cache_dir",
    "extract_class_code",
    "resolve_model",
]


def __getattr__(name: str) -> Any:
    if name == "TransformersLLM":
        from llmatic.llm.transformers_backend import TransformersLLM

        return TransformersLLM
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
