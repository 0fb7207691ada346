"""What every trainable model shares: default loss/metrics, and padding that never counts."""

import keras
import tensorflow as tf

from keras_transformers.models.losses import SparseCategoricalCrossentropy


class ShapeFreeBuild:
    """For models whose weights don't depend on the input shape: ``build(None)`` creates them
    all, so a saved model records no shapes and rebuilds before its weights are loaded."""

    def get_build_config(self):
        return {"input_shape": None}

    def build_from_config(self, config):
        self.build(None)
        if not self.trainable:  # a saved trainable=False must also reach the layers just built
            for layer in self._layers:
                layer.trainable = False


class TaskModel(ShapeFreeBuild, keras.Model):
    """Base of the trainable models.

    ``compile(loss="auto", metrics="auto", jit_compile="auto")`` picks cross-entropy on logits
    averaged over what counts, accuracy, and XLA compilation of the train step — on CPU too,
    where Keras' own "auto" turns XLA off: every layer here compiles, and XLA fuses the many
    small element-wise ops of a transformer.
    Per-token models name the input mask their labels align with (``labels_padding_mask``):
    their loss and *all* metrics are then weighted by :meth:`token_weights` (padding and
    negative labels, e.g. -100, weigh 0), so ``padding never counts`` holds for ``fit`` and
    ``evaluate`` without the user passing sample weights. To make that hold for metrics, such
    models move the ``metrics`` given to ``compile`` into ``weighted_metrics``.
    """

    labels_padding_mask = None  # per-example models; per-token ones name an input key

    def token_weights(self, x, y):
        """``(batch, seq)`` float weights of per-token labels, or ``None`` for per-example models:
        1 where the label's position is real and the label is not negative."""
        if self.labels_padding_mask is None:
            return None
        counted = tf.logical_and(tf.cast(x[self.labels_padding_mask], tf.bool), y >= 0)
        return tf.cast(counted, tf.float32)

    def compile(self, optimizer="adam", loss="auto", metrics="auto", weighted_metrics=None,
                run_eagerly=False, jit_compile="auto", **kwargs):
        if jit_compile == "auto":
            jit_compile = not run_eagerly
        if loss == "auto":
            loss = SparseCategoricalCrossentropy()
        if metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        if self.is_token_level:
            weighted_metrics = list(weighted_metrics or []) + list(metrics or [])
            metrics = None
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics,
                        weighted_metrics=weighted_metrics, run_eagerly=run_eagerly,
                        jit_compile=jit_compile, **kwargs)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("backbone"), dict):  # task models that wrap a backbone model
            config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)

    def compile_from_config(self, config):
        # Keras skips models with their own compile(); ours is safe to call with a saved config.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def is_token_level(self):
        return self.labels_padding_mask is not None

    def _weigh(self, x, y, sample_weight):
        weights = self.token_weights(x, y)
        if weights is None or y is None:
            return y, sample_weight
        # Ignored labels may be negative (e.g. -100); give them a valid id with weight 0.
        y = tf.where(weights > 0, y, tf.zeros_like(y))
        if sample_weight is not None:
            sample_weight = tf.cast(sample_weight, weights.dtype)
            if sample_weight.shape.rank == 1:
                sample_weight = sample_weight[:, None]
            weights = weights * sample_weight
        return y, weights

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        y, sample_weight = self._weigh(x, y, sample_weight)
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                    training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        y, sample_weight = self._weigh(x, y, sample_weight)
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)
