"""Pure functions with no weights: the attention core."""

from keras_transformers.ops.attention import (
    causal_mask,
    get_jit_compile,
    jit_compile_scope,
    scaled_dot_product_attention,
    set_jit_compile,
)

__all__ = [
    "causal_mask",
    "get_jit_compile",
    "jit_compile_scope",
    "scaled_dot_product_attention",
    "set_jit_compile",
]
