"""The task models' default loss: sparse cross-entropy with label smoothing, which Keras lacks."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_transformers")
class SparseCategoricalCrossentropy(keras.losses.Loss):
    """Cross-entropy on integer labels, with optional label smoothing (Szegedy et al., 2016).

    With ``K`` classes and ``ε = label_smoothing`` the target distribution is
    ``q = (1 − ε)·onehot(y) + ε/K``, so ``loss = −(1 − ε)·log p_y − (ε/K)·Σ_k log p_k``,
    exactly Keras' ``CategoricalCrossentropy(label_smoothing=ε)`` on one-hot labels, without
    materializing the one-hot tensor. Computed in float32.

    The default reduction, ``mean_with_sample_weight``, averages over what counts: with the
    padding weights the task models pass, the loss is the mean over real tokens.

    Args:
        label_smoothing: ``ε`` in [0, 1); 0.1 in Vaswani et al.
        from_logits: whether predictions are logits (our models output logits).

    Shapes: labels ``(batch, ...)`` int, predictions ``(batch, ..., K)`` → per-token losses.

    Example:
        >>> model.compile(optimizer="adam", loss=SparseCategoricalCrossentropy(label_smoothing=0.1))
    """

    def __init__(self, label_smoothing=0.0, from_logits=True, reduction="mean_with_sample_weight",
                 name="sparse_categorical_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"`label_smoothing` must be in [0, 1), got {label_smoothing}.")
        self.label_smoothing = float(label_smoothing)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        y_pred = tf.cast(y_pred, tf.float32)
        log_probs = tf.nn.log_softmax(y_pred) if self.from_logits else tf.math.log(
            tf.clip_by_value(y_pred, 1e-7, 1.0))
        y_true = tf.cast(y_true, tf.int32)
        if y_true.shape.rank == log_probs.shape.rank:
            y_true = tf.squeeze(y_true, -1)
        true_log_prob = tf.gather(log_probs, y_true, axis=-1, batch_dims=y_true.shape.rank)
        if not self.label_smoothing:
            return -true_log_prob
        epsilon = self.label_smoothing
        return -(1.0 - epsilon) * true_log_prob - epsilon * tf.reduce_mean(log_probs, axis=-1)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing,
                "from_logits": self.from_logits}
