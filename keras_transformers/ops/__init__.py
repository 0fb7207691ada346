"""Pure functions with no weights: the attention core, the key/value cache, GELU, and the
products whose one-row case takes XLA's fast form (:mod:`keras_transformers.ops.matmul`)."""

from keras_transformers.ops.activations import gelu
from keras_transformers.ops.attention import (
    causal_mask,
    get_jit_compile,
    jit_compile_scope,
    scaled_dot_product_attention,
    set_jit_compile,
)
from keras_transformers.ops.cache import cache_causal_mask, update_cache
from keras_transformers.ops.chunked_attention import chunked_attention
from keras_transformers.ops.matmul import matmul_rows, matmul_transposed

__all__ = [
    "cache_causal_mask",
    "causal_mask",
    "chunked_attention",
    "gelu",
    "get_jit_compile",
    "jit_compile_scope",
    "matmul_rows",
    "matmul_transposed",
    "scaled_dot_product_attention",
    "set_jit_compile",
    "update_cache",
]
