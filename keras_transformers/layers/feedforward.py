"""The position-wise feed-forward network: relu | gelu | gelu_approximate | swiglu | geglu."""

import keras
import tensorflow as tf

from keras_transformers.layers.quantization import Int8Dense
from keras_transformers.ops import gelu

ACTIVATIONS = ("relu", "gelu", "gelu_approximate", "swiglu", "geglu")
GATED_ACTIVATIONS = ("swiglu", "geglu")


@keras.saving.register_keras_serializable(package="keras_transformers")
class FeedForward(keras.layers.Layer):
    """Position-wise feed-forward network.

    * ``relu`` (Vaswani et al.): ``FFN(x) = max(0, x·W1 + b1)·W2 + b2``
    * ``gelu`` (BERT, exact erf form) and ``gelu_approximate`` (GPT-2, tanh form):
      ``FFN(x) = GELU(x·W1 + b1)·W2 + b2``
    * ``swiglu`` (Shazeer, 2020; Llama): ``FFN(x) = (SiLU(x·W_gate) ⊙ x·W_up)·W_down``
    * ``geglu`` (Shazeer, 2020; T5 v1.1's "gated-gelu"):
      ``FFN(x) = (GELU_tanh(x·W_gate) ⊙ x·W_up)·W_down``

    Args:
        intermediate_size: width of the hidden layer.
        activation: one of ``relu``, ``gelu``, ``gelu_approximate``, ``swiglu``, ``geglu``.
        use_bias: add biases to the projections (Llama uses none).
        dropout: dropout rate on the intermediate activations.
        kernel_initializer: initializer of the projection kernels.

    Shapes: ``(batch, seq, hidden)`` → ``(batch, seq, hidden)``.

    Example:
        >>> FeedForward(64, activation="swiglu")(tf.zeros([2, 5, 16])).shape
        TensorShape([2, 5, 16])
    """

    def __init__(self, intermediate_size, activation="gelu", use_bias=True, dropout=0.0,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if activation not in ACTIVATIONS:
            raise ValueError(f"`activation` must be one of {ACTIVATIONS}, got {activation!r}.")
        self.intermediate_size = int(intermediate_size)
        self.activation = activation
        self.use_bias = bool(use_bias)
        self.dropout = float(dropout)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def _dense(self, units, name):
        # Dense, whose model.quantize("int8") form is weight-only (and loads back from a file).
        return Int8Dense(units, use_bias=self.use_bias, kernel_initializer=self.kernel_initializer,
                         name=name, dtype=self.dtype_policy)

    def build(self, input_shape):
        hidden_size = input_shape[-1]
        self.up_proj = self._dense(self.intermediate_size, "up_proj")
        self.up_proj.build(input_shape)
        if self.activation in GATED_ACTIVATIONS:
            self.gate_proj = self._dense(self.intermediate_size, "gate_proj")
            self.gate_proj.build(input_shape)
        self.down_proj = self._dense(hidden_size, "down_proj")
        self.down_proj.build((*input_shape[:-1], self.intermediate_size))
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.built = True

    def call(self, x, training=None):
        if self.activation == "swiglu":
            hidden = tf.nn.silu(self.gate_proj(x)) * self.up_proj(x)
        elif self.activation == "geglu":
            hidden = gelu(self.gate_proj(x), approximate=True) * self.up_proj(x)
        elif self.activation == "relu":
            hidden = tf.nn.relu(self.up_proj(x))
        else:
            hidden = gelu(self.up_proj(x), approximate=self.activation == "gelu_approximate")
        return self.down_proj(self.dropout_layer(hidden, training=training))

    def get_config(self):
        return {**super().get_config(), "intermediate_size": self.intermediate_size,
                "activation": self.activation, "use_bias": self.use_bias, "dropout": self.dropout,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}
