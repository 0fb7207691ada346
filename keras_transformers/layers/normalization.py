"""RMSNorm, and the one factory that picks a norm by name (LayerNormalization is Keras')."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_transformers")
class RMSNorm(keras.layers.Layer):
    """Root-mean-square normalization (Zhang & Sennrich, 2019), as in Llama.

    ``y = x / sqrt(mean(x², axis=-1) + epsilon) · g`` — no mean subtraction, no bias.
    Computed in float32 whatever the compute dtype.

    Shapes: ``(..., hidden)`` → same.

    Example:
        >>> RMSNorm()(tf.constant([[3.0, 4.0]]))   # rms = 3.5355
        <tf.Tensor: shape=(1, 2), dtype=float32, numpy=array([[0.8485, 1.1314]], dtype=float32)>
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        # autocast=False: under mixed precision g is read in float32, as in LayerNormalization.
        self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer="ones",
                                     autocast=False)
        self.built = True

    def call(self, x):
        x32 = tf.cast(x, tf.float32)
        normalized = x32 * tf.math.rsqrt(tf.reduce_mean(tf.square(x32), axis=-1, keepdims=True) + self.epsilon)
        return tf.cast(normalized * tf.cast(self.scale, tf.float32), self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


NORM_TYPES = ("layer_norm", "rms_norm")


def make_norm(norm_type, epsilon, name, dtype=None):
    """``"layer_norm"`` → ``keras.layers.LayerNormalization``; ``"rms_norm"`` → :class:`RMSNorm`."""
    if norm_type == "layer_norm":
        return keras.layers.LayerNormalization(epsilon=epsilon, name=name, dtype=dtype)
    if norm_type == "rms_norm":
        return RMSNorm(epsilon=epsilon, name=name, dtype=dtype)
    raise ValueError(f"`norm_type` must be one of {NORM_TYPES}, got {norm_type!r}.")
