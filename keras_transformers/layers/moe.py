"""MixtureOfExperts: a routed feed-forward of ``E`` SwiGLU experts, ``k`` per token (Mixtral)."""

import keras
import tensorflow as tf

from keras_transformers.layers.quantization import (
    add_int8,
    assign_int8,
    check_mode,
    convert_if_int8_store,
    drop_variable,
    set_int8_policy,
)

_EXPERT_KERNELS = ("gate", "up", "down")


@keras.saving.register_keras_serializable(package="keras_transformers")
class MixtureOfExperts(keras.layers.Layer):
    """Sparse mixture-of-experts feed-forward (Shazeer et al., 2017; Mixtral, Jiang et al., 2024).

    A router scores every expert for each token, ``p = softmax(x·W_router)`` (float32), keeps
    the ``k`` best, and renormalizes their weights over the chosen ``k`` as Mixtral does::

        top = top_k(p, k);   w_e = p_e / Σ_{j ∈ top} p_j  (e ∈ top, else 0)
        MoE(x) = Σ_e w_e · (SiLU(x·W_gate^e) ⊙ x·W_up^e)·W_down^e

    In training it adds the router's load-balancing loss (Switch Transformer, Fedus et al.,
    2021, eq. 4, in Hugging Face's Mixtral form) times ``router_aux_loss_weight``::

        aux = E · Σ_e f_e · P_e,   f_e = (tokens sent to e, over the k slots) / tokens,
                                   P_e = the mean router probability of e

    (``k`` when routing is uniform; larger when a few experts take most tokens). Padding tokens
    (``padding_mask`` 0) count in neither.

    **How it computes, and what that costs.** Densely: every expert runs on every token and the
    outputs are combined with the routing weights (zero for the experts not chosen). That is
    ``E/k`` times the FLOPs of the sparse computation and holds ``(batch, seq, E,
    intermediate)`` activations, but it is a few large einsums that XLA compiles to static
    shapes, exports to SavedModel and ONNX, and differentiates without gathers or scatters. It
    is the right form for small ``E`` (Mixtral's 8) and small models; for many experts a
    gathered (token-dropping, capacity-limited) dispatch would be needed and is not built.

    Args:
        intermediate_size: each expert's hidden width.
        num_experts: ``E``.
        experts_per_token: ``k``.
        router_aux_loss_weight: the load-balancing loss's weight (0: none).
        kernel_initializer: initializer of the router and expert kernels.

    Call args: ``x`` ``(batch, seq, hidden)``; ``padding_mask`` ``(batch, seq)`` (optional,
    for the auxiliary loss). Returns ``(batch, seq, hidden)``.

    Example:
        >>> moe = MixtureOfExperts(64, num_experts=4, experts_per_token=2)
        >>> moe(tf.zeros([2, 5, 16])).shape
        TensorShape([2, 5, 16])

    ``quantize("int8")``: the expert kernels become weight-only int8, output-major per expert
    (``gate``/``up`` ``(E, intermediate, hidden)``, ``down`` ``(E, hidden, intermediate)``)
    with one scale per expert and output channel, ``s = max|W[e, :, o]|/127``; each einsum
    multiplies by the int8 kernel (as float) and then by ``s``. The router stays float32.
    """

    def __init__(self, intermediate_size, num_experts=8, experts_per_token=2, router_aux_loss_weight=0.02,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if not 1 <= experts_per_token <= num_experts:
            raise ValueError(f"`experts_per_token` must be in [1, num_experts={num_experts}], got "
                             f"{experts_per_token}.")
        self.intermediate_size = int(intermediate_size)
        self.num_experts, self.experts_per_token = int(num_experts), int(experts_per_token)
        self.router_aux_loss_weight = float(router_aux_loss_weight)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        hidden, experts, inner = input_shape[-1], self.num_experts, self.intermediate_size
        self.router_kernel = self.add_weight(name="router_kernel", shape=(hidden, experts),
                                             initializer=self.kernel_initializer)
        if self.quantization_mode == "int8":  # a saved int8 layer being rebuilt
            for name, shape in (("gate", (experts, inner, hidden)), ("up", (experts, inner, hidden)),
                                ("down", (experts, hidden, inner))):
                self._set_int8(name, *add_int8(self, f"{name}_kernel", shape))
            self.built = True
            return
        self.gate_kernel = self.add_weight(name="gate_kernel", shape=(experts, hidden, inner),
                                           initializer=self.kernel_initializer)
        self.up_kernel = self.add_weight(name="up_kernel", shape=(experts, hidden, inner),
                                         initializer=self.kernel_initializer)
        self.down_kernel = self.add_weight(name="down_kernel", shape=(experts, inner, hidden),
                                           initializer=self.kernel_initializer)
        self.built = True

    def _set_int8(self, name, kernel, scale):
        setattr(self, f"{name}_kernel", kernel)
        setattr(self, f"{name}_kernel_scale", scale)
        self._is_quantized = True

    def quantize(self, mode=None, type_check=True, config=None):
        check_mode(self, mode)
        for name in _EXPERT_KERNELS:  # (E, in, out) -> output-major (E, out, in)
            values = getattr(self, f"{name}_kernel").numpy().transpose(0, 2, 1)
            drop_variable(self, f"{name}_kernel")
            kernel, kernel_scale = add_int8(self, f"{name}_kernel", values.shape)
            assign_int8(kernel, kernel_scale, values)
            self._set_int8(name, kernel, kernel_scale)
        set_int8_policy(self)

    def _int8_call(self, *args, **kwargs):
        return self.call(*args, **kwargs)

    def load_own_variables(self, store):
        convert_if_int8_store(self, store, len(self.weights), len(_EXPERT_KERNELS))
        super().load_own_variables(store)

    def routing(self, x):
        """``(probabilities, weights, chosen)``: the float32 router softmax ``(batch, seq, E)``,
        the renormalized combine weights ``(batch, seq, E)`` (zero off the top ``k``), and the
        chosen experts' one-hot ``(batch, seq, k, E)``."""
        logits = tf.einsum("bsh,he->bse", tf.cast(x, tf.float32), tf.cast(self.router_kernel, tf.float32))
        probabilities = tf.nn.softmax(logits, axis=-1)
        top_weights, top_experts = tf.math.top_k(probabilities, k=self.experts_per_token)
        top_weights = top_weights / tf.reduce_sum(top_weights, axis=-1, keepdims=True)
        chosen = tf.one_hot(top_experts, self.num_experts, dtype=tf.float32)
        weights = tf.reduce_sum(chosen * top_weights[..., None], axis=-2)
        return probabilities, weights, chosen

    def load_balancing_loss(self, probabilities, chosen, padding_mask=None):
        """``E · Σ_e f_e · P_e`` over the counted tokens (see the class docstring)."""
        if padding_mask is None:
            counted = tf.ones(tf.shape(probabilities)[:2], tf.float32)
        else:
            counted = tf.cast(padding_mask, tf.float32)
        tokens = tf.maximum(tf.reduce_sum(counted), 1.0)
        fraction = tf.einsum("bske,bs->e", chosen, counted) / tokens
        mean_probability = tf.einsum("bse,bs->e", probabilities, counted) / tokens
        return self.num_experts * tf.reduce_sum(fraction * mean_probability)

    def call(self, x, padding_mask=None, training=None):
        probabilities, weights, chosen = self.routing(x)
        if training and self.router_aux_loss_weight > 0.0:
            self.add_loss(self.router_aux_loss_weight * self.load_balancing_loss(probabilities, chosen, padding_mask))
        if self.quantization_mode == "int8":
            def int8(name):
                return tf.cast(getattr(self, f"{name}_kernel"), x.dtype), tf.cast(getattr(self, f"{name}_kernel_scale"), x.dtype)
            (gate_q, gate_s), (up_q, up_s), (down_q, down_s) = int8("gate"), int8("up"), int8("down")
            gate = tf.einsum("bsh,efh->bsef", x, gate_q) * gate_s
            up = tf.einsum("bsh,efh->bsef", x, up_q) * up_s
            expert_outputs = tf.einsum("bsef,ehf->bseh", tf.nn.silu(gate) * up, down_q) * down_s
        else:
            gate = tf.einsum("bsh,ehf->bsef", x, self.gate_kernel)
            up = tf.einsum("bsh,ehf->bsef", x, self.up_kernel)
            expert_outputs = tf.einsum("bsef,efh->bseh", tf.nn.silu(gate) * up, self.down_kernel)
        return tf.einsum("bseh,bse->bsh", expert_outputs, tf.cast(weights, expert_outputs.dtype))

    def get_config(self):
        return {**super().get_config(), "intermediate_size": self.intermediate_size,
                "num_experts": self.num_experts, "experts_per_token": self.experts_per_token,
                "router_aux_loss_weight": self.router_aux_loss_weight,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}
