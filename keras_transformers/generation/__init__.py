"""Text generation: the cached, compiled decode loops behind ``CausalLM.generate`` and
``Seq2Seq.generate``, token selection, and the uncached reference loop."""

from keras_transformers.generation.generate import (
    CACHE_SIZE,
    NonFiniteLogitsError,
    cache_info,
    generate,
    pad_prompts,
    trace_count,
)
from keras_transformers.generation.sampling import select_next_token
from keras_transformers.generation.uncached import generate_uncached

__all__ = ["CACHE_SIZE", "NonFiniteLogitsError", "cache_info", "generate", "generate_uncached",
           "pad_prompts", "select_next_token", "trace_count"]
