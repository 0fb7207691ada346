"""Pure functions with no weights: the attention core, the key/value cache, GELU."""

from keras_transformers.ops.activations import gelu
from keras_transformers.ops.attention import (
    causal_mask,
    get_jit_compile,
    jit_compile_scope,
    scaled_dot_product_attention,
    set_jit_compile,
)
from keras_transformers.ops.cache import cache_causal_mask, update_cache

__all__ = [
    "cache_causal_mask",
    "causal_mask",
    "gelu",
    "get_jit_compile",
    "jit_compile_scope",
    "scaled_dot_product_attention",
    "set_jit_compile",
    "update_cache",
]
