"""MultiHeadAttention: self / cross / causal, grouped key-value heads, rotary positions."""

import keras
import tensorflow as tf
from numpy import prod as np_prod

from keras_transformers.layers.embeddings import RotaryEmbedding
from keras_transformers.layers.quantization import Int8AttentionMixin, check_not_quantized, float_policy
from keras_transformers.layers.rope_scaling import check_rope_scaling
from keras_transformers.ops import cache_causal_mask, scaled_dot_product_attention, update_cache
from keras_transformers.ops.attention import IMPLEMENTATIONS, check_sliding_window
from keras_transformers.ops.matmul import TWO_ROW_MIN_KERNEL_SIZE, count_rows, one_row_form, two_rows


@keras.saving.register_keras_serializable(package="keras_transformers")
class MultiHeadAttention(Int8AttentionMixin, keras.layers.Layer):
    """Multi-head attention (Vaswani et al., 2017, section 3.2.2).

    ``head_i = Attention(Q·W_i^Q, K·W_i^K, V·W_i^V)``, ``MHA = Concat(head_1..head_h)·W^O``,
    with ``Attention`` the one core, :func:`keras_transformers.ops.scaled_dot_product_attention`.
    Queries come from ``query``; keys and values from ``key_value`` (cross-attention) or from
    ``query`` itself (self-attention). With ``num_key_value_heads < num_heads`` the keys and
    values have fewer heads, each shared by a group of query heads (grouped-query attention,
    Ainslie et al., 2023). With ``rotary_max_wavelength`` set, queries and keys are rotated by
    :class:`RotaryEmbedding` after projection. With ``sliding_window=W`` causal attention
    sees only the ``W`` most recent positions (Mistral): the query at position ``i`` sees keys
    ``i - W < j <= i``, in training, in a full forward, and over a decoding cache.

    Args:
        num_heads: number of query heads ``h``.
        head_dim: width of each head ``d_k``.
        num_key_value_heads: number of key/value heads; ``num_heads`` when ``None``.
        use_bias: add biases to the four projections.
        qkv_bias: add biases to the query, key and value projections only (Qwen2: True with
            ``use_bias=False``); follows ``use_bias`` when ``None``.
        dropout: dropout rate on the attention weights.
        rotary_max_wavelength: apply RoPE with this base (10000 in Llama); ``None`` for none.
        rope_scaling: RoPE scaling dict for :class:`RotaryEmbedding` (``linear`` | ``dynamic``
            | ``llama3`` | ``yarn``); ``None`` for none.
        sliding_window: causal attention sees only the ``W`` most recent positions; ``None``
            for all. The decoding cache keeps every slot and masks the older ones.
        kernel_initializer: initializer of the projection kernels.
        attention_implementation: ``"auto"`` | ``"exact"`` | ``"chunked"``, the core's
            ``implementation`` (chunked: memory-efficient tiles for long sequences).
        scale: multiplier of the scores ``Q·Kᵀ``; ``1/√head_dim`` when ``None`` (T5: 1.0, its
            initialization folds the scale into the query projection).

    Call args:
        query: ``(batch, q_len, hidden)``.
        key_value: ``(batch, k_len, kv_hidden)`` for cross-attention, else ``None``.
        attention_mask: bool, broadcastable to ``(batch, heads, q_len, k_len)``; True = may attend.
        causal: forbid attending to later positions.
        positions: ``(batch, q_len)`` positions for the rotary embedding; ``0..q_len-1`` if None.
        cache: ``(keys, values)``, each ``(batch, kv_heads, cache_length, head_dim)``. With
            ``cache_index`` it is a decoding cache: this call's keys/values are written at
            ``cache_index`` and the queries attend to the whole cache (``causal`` then means
            "slots up to the query's own"). Without ``cache_index`` it holds keys/values
            computed beforehand by :meth:`key_values` (a seq2seq decoder's cross-attention).
        cache_index: ``(batch, q_len)`` int cache slots of the queries, which are also their
            positions (for the rotary embedding, pass the same tensor as ``positions``).
        return_attention_weights: also return the ``(batch, heads, q_len, k_len)`` weights.
        attention_bias: float, broadcastable to ``(batch, heads, q_len, k_len)``, added to the
            scores (T5's :class:`RelativePositionBias`); ``None`` for none.

    Returns:
        ``(batch, q_len, hidden)`` (the query's width); then the weights on request; then,
        when ``cache`` is given, the ``(keys, values)`` cache after this call.

    Example:
        >>> attention = MultiHeadAttention(num_heads=4, head_dim=8, num_key_value_heads=2)
        >>> x = tf.random.normal([2, 5, 32])
        >>> outputs, weights = attention(x, causal=True, return_attention_weights=True)
        >>> outputs.shape, weights.shape
        (TensorShape([2, 5, 32]), TensorShape([2, 4, 5, 5]))

    ``quantize("int8")`` (as ``model.quantize("int8")`` calls it) stores the four kernels as
    weight-only int8 with per-output-channel scales: :class:`Int8AttentionMixin`.
    """

    def __init__(self, num_heads, head_dim, num_key_value_heads=None, use_bias=True, dropout=0.0,
                 rotary_max_wavelength=None, kernel_initializer="glorot_uniform", qkv_bias=None,
                 rope_scaling=None, sliding_window=None, attention_implementation="auto", scale=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.head_dim = int(head_dim)
        self.num_key_value_heads = int(num_key_value_heads or num_heads)
        if self.num_heads % self.num_key_value_heads:
            raise ValueError(
                f"`num_heads` ({self.num_heads}) must be a multiple of `num_key_value_heads` "
                f"({self.num_key_value_heads}).")
        self.use_bias = bool(use_bias)
        self.qkv_bias = self.use_bias if qkv_bias is None else bool(qkv_bias)
        self.dropout = float(dropout)
        self.rotary_max_wavelength = None if rotary_max_wavelength is None else float(rotary_max_wavelength)
        self.rope_scaling = check_rope_scaling(rope_scaling)
        self.sliding_window = check_sliding_window(sliding_window)
        if attention_implementation not in IMPLEMENTATIONS:
            raise ValueError(f"`attention_implementation` must be one of {IMPLEMENTATIONS}, "
                             f"got {attention_implementation!r}.")
        self.attention_implementation = attention_implementation
        self.scale = None if scale is None else float(scale)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.seed_generator = keras.random.SeedGenerator(seed=None)
        self.lora_rank = None

    def _projection(self, name, kernel_shape, bias_shape):
        if self.quantization_mode == "int8":  # a saved int8 layer being rebuilt
            kernel = self._int8_kernel(name, kernel_shape)
        else:
            kernel = self.add_weight(name=f"{name}_kernel", shape=kernel_shape,
                                     initializer=self.kernel_initializer)
        bias = None
        has_bias = self.use_bias if name == "output" else self.qkv_bias
        if has_bias:
            bias = self.add_weight(name=f"{name}_bias", shape=bias_shape, initializer="zeros")
        return kernel, bias

    def build(self, query_shape, key_value_shape=None):
        hidden_size = query_shape[-1]
        kv_hidden_size = (key_value_shape or query_shape)[-1]
        heads, kv_heads, dim = self.num_heads, self.num_key_value_heads, self.head_dim
        self.query_kernel, self.query_bias = self._projection(
            "query", (hidden_size, heads, dim), (heads, dim))
        self.key_kernel, self.key_bias = self._projection(
            "key", (kv_hidden_size, kv_heads, dim), (kv_heads, dim))
        self.value_kernel, self.value_bias = self._projection(
            "value", (kv_hidden_size, kv_heads, dim), (kv_heads, dim))
        self.output_kernel, self.output_bias = self._projection(
            "output", (heads, dim, hidden_size), (hidden_size,))
        rotary = None
        if self.rotary_max_wavelength is not None:
            rotary = RotaryEmbedding(self.rotary_max_wavelength, scaling=self.rope_scaling,
                                     dtype=float_policy(self))
            rotary.build((None, heads, None, dim))
        # Not a tracked sublayer (it has no weights; the saved file is the same): Keras'
        # Model.quantize quantizes only layers without sublayers, and this one must be one.
        object.__setattr__(self, "rotary", rotary)
        self.built = True

    _PROJECTIONS = ("query", "key", "value", "output")

    def enable_lora(self, rank, lora_alpha=None, projections=_PROJECTIONS):
        """Low-rank adapters (Hu et al., 2021) on the projection kernels, as Keras'
        ``Dense.enable_lora``: ``W' = W + (alpha/rank)·A·B`` with ``W`` frozen, ``A``
        ``(in, rank)`` (he-uniform) and ``B`` ``(rank, out)`` (zeros, so the layer starts
        unchanged) trainable; ``in``/``out`` are the kernel's flattened fan-in/fan-out
        (``(hidden, heads·dim)`` for queries, keys, values; ``(heads·dim, hidden)`` for the
        output). The adapted kernel is formed once per call, then used as the kernel was, so
        the projections (and their one-row fast path) are unchanged.

        Args:
            rank: adapter rank ``r``.
            lora_alpha: scale numerator; ``rank`` when None (scale 1).
            projections: which of ``query``, ``key``, ``value``, ``output`` to adapt.
        """
        if not self.built:
            raise ValueError("Cannot enable LoRA on a MultiHeadAttention that isn't built yet.")
        check_not_quantized(self)
        if self.lora_rank is not None:
            raise ValueError("LoRA is already enabled on this layer; it can be enabled once.")
        unknown = set(projections) - set(self._PROJECTIONS)
        if unknown or not projections:
            raise ValueError(f"`projections` must be a non-empty subset of {self._PROJECTIONS}, "
                             f"got {projections!r}.")
        self._tracker.unlock()
        self.lora_rank = int(rank)
        self.lora_alpha = float(lora_alpha if lora_alpha is not None else rank)
        self.lora_projections = tuple(name for name in self._PROJECTIONS if name in projections)
        self.lora_kernels = {}
        for name in self.lora_projections:
            kernel = getattr(self, f"{name}_kernel")
            kernel.trainable = False
            fan_in = kernel.shape[0] if name != "output" else kernel.shape[0] * kernel.shape[1]
            fan_out = int(np_prod(kernel.shape)) // fan_in
            self.lora_kernels[name] = (
                self.add_weight(name=f"{name}_lora_a", shape=(fan_in, self.lora_rank),
                                initializer="he_uniform"),
                self.add_weight(name=f"{name}_lora_b", shape=(self.lora_rank, fan_out),
                                initializer="zeros"))
        self._tracker.lock()

    def adapted_kernel(self, name):
        """The ``name`` projection's kernel with its LoRA update folded in (the kernel itself
        without LoRA): ``W + (alpha/rank)·A·B`` reshaped to ``W``'s shape."""
        kernel = getattr(self, f"{name}_kernel")
        if self.lora_rank is None or name not in self.lora_kernels:
            return kernel
        a, b = self.lora_kernels[name]
        update = tf.matmul(a, b) * (self.lora_alpha / self.lora_rank)
        return kernel + tf.cast(tf.reshape(update, kernel.shape), kernel.dtype)

    def save_own_variables(self, store):
        # As Keras' Dense: a LoRA layer saves its merged kernels, so the file loads into a
        # plain layer (the config carries no LoRA) with the adapted outputs.
        if self.lora_rank is None:
            return super().save_own_variables(store)
        index = 0
        for variable in self._trainable_variables + self._non_trainable_variables:
            if any(variable is a or variable is b for a, b in self.lora_kernels.values()):
                continue
            name = next((n for n in self.lora_projections if getattr(self, f"{n}_kernel") is variable), None)
            store[str(index)] = self.adapted_kernel(name) if name else variable
            index += 1

    @staticmethod
    def _project(x, kernel, bias):
        """``(batch, seq, hidden) · (hidden, heads, dim)`` → ``(batch, heads, seq, dim)``.

        One row (decoding at batch 1) under XLA is :func:`~keras_transformers.ops.matmul_rows`'
        two-row form, with the kernel viewed as ``(hidden, heads·dim)``; otherwise an einsum."""
        hidden, heads, dim = kernel.shape

        def one_row(x, kernel):
            shape = tf.shape(x)
            product = two_rows(x, tf.reshape(kernel, [hidden, heads * dim]))
            return tf.transpose(tf.reshape(product, [shape[0], shape[1], heads, dim]), [0, 2, 1, 3])

        projected = one_row_form(count_rows(x), one_row,
                                 lambda x, kernel: tf.einsum("bsh,hnd->bnsd", x, kernel), (x, kernel),
                                 hidden * heads * dim >= TWO_ROW_MIN_KERNEL_SIZE)
        projected.set_shape([x.shape[0], heads, x.shape[1], dim])
        return projected if bias is None else projected + bias[:, None, :]

    @staticmethod
    def _merge_heads(outputs, kernel):
        """``(batch, heads, seq, dim) · (heads, dim, hidden)`` → ``(batch, seq, hidden)``, one row
        in the two-row form as :meth:`_project`."""
        heads, dim, hidden = kernel.shape

        def one_row(outputs, kernel):
            shape = tf.shape(outputs)
            merged = tf.reshape(tf.transpose(outputs, [0, 2, 1, 3]), [shape[0], shape[2], heads * dim])
            return two_rows(merged, tf.reshape(kernel, [heads * dim, hidden]))

        merged = one_row_form(count_rows(outputs, (0, 2)), one_row,
                              lambda outputs, kernel: tf.einsum("bnsd,ndh->bsh", outputs, kernel),
                              (outputs, kernel),
                              heads * dim * hidden >= TWO_ROW_MIN_KERNEL_SIZE)
        merged.set_shape([outputs.shape[0], outputs.shape[2], hidden])
        return merged

    def _input_projection(self, name, x):
        if self.quantization_mode == "int8":
            return self._int8_input_projection(name, x)
        return self._project(x, self.adapted_kernel(name), getattr(self, f"{name}_bias"))

    def key_values(self, source, positions=None):
        """Keys and values of ``source`` ``(batch, k_len, kv_hidden)``, each
        ``(batch, kv_heads, k_len, head_dim)`` (keys rotated when rotary). A seq2seq decoder
        computes its cross-attention keys/values once with this and passes them as ``cache``."""
        k, v = self._input_projection("key", source), self._input_projection("value", source)
        if self.rotary is not None:
            k = self.rotary(k, positions)
        return k, v

    def call(self, query, key_value=None, attention_mask=None, causal=False, positions=None,
             cache=None, cache_index=None, return_attention_weights=False, attention_bias=None,
             training=None):
        q = self._input_projection("query", query)
        if self.rotary is not None:
            q = self.rotary(q, positions)
        if cache is not None and cache_index is None:  # keys/values computed beforehand
            k, v = cache
        else:
            source = query if key_value is None else key_value
            k, v = self.key_values(source, positions if key_value is None else None)
        if cache is not None and cache_index is not None:
            # Incremental decoding: write the new keys/values at their slots, then attend to
            # the whole fixed-size cache; slots after each query (unwritten or stale) are masked.
            k, v = update_cache(cache[0], k, cache_index), update_cache(cache[1], v, cache_index)
            if causal:
                visible = cache_causal_mask(cache_index, tf.shape(k)[2], self.sliding_window)
                attention_mask = visible if attention_mask is None else tf.logical_and(
                    tf.cast(attention_mask, tf.bool), visible)
                causal = False

        seed = None
        if training and self.dropout > 0.0:
            seed = tf.cast(self.seed_generator.next(), tf.int32)
        outputs = scaled_dot_product_attention(
            q, k, v, mask=attention_mask, causal=causal, scale=self.scale, bias=attention_bias,
            dropout_rate=self.dropout,
            training=bool(training), seed=seed, return_weights=return_attention_weights,
            sliding_window=self.sliding_window, implementation=self.attention_implementation)
        if return_attention_weights:
            outputs, weights = outputs
        if self.quantization_mode == "int8":
            outputs = self._int8_output_projection(outputs)
        else:
            outputs = self._merge_heads(outputs, self.adapted_kernel("output"))
        if self.output_bias is not None:
            outputs = outputs + self.output_bias
        results = (outputs, weights) if return_attention_weights else (outputs,)
        if cache is not None:
            results += ((k, v),)
        return results if len(results) > 1 else outputs

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "head_dim": self.head_dim,
                "num_key_value_heads": self.num_key_value_heads, "use_bias": self.use_bias,
                "dropout": self.dropout, "rotary_max_wavelength": self.rotary_max_wavelength,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "qkv_bias": self.qkv_bias, "rope_scaling": self.rope_scaling,
                "sliding_window": self.sliding_window,
                "attention_implementation": self.attention_implementation, "scale": self.scale}
