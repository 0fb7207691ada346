"""What every trainable model shares: default loss/metrics, and padding that never counts."""

import keras
import numpy as np
import tensorflow as tf

from keras_transformers.models.losses import SparseCategoricalCrossentropy
from keras_transformers.models.steps import CheckedSteps

UNICODE_CODE_POINTS = 0x110000  # the ids a character tokenizer without a vocabulary_size can give


def number_of_examples(x):
    """The batch size of array-like inputs (a dict of arrays, an array, a list), else ``None``."""
    first = next(iter(x.values()), None) if isinstance(x, dict) else x
    if isinstance(first, tuple):
        first = first[0] if first else None
    if isinstance(first, (list, np.ndarray, tf.Tensor)):
        return len(first) if not isinstance(first, tf.Tensor) else first.shape[0]
    return None


class ShapeFreeBuild:
    """For models whose weights don't depend on the input shape: ``build(None)`` creates them
    all, so a saved model records no shapes and rebuilds before its weights are loaded."""

    def get_build_config(self):
        return {"input_shape": None}

    def save(self, filepath, *args, **kwargs):
        # An unbuilt model would save no weights, and its file would not load.
        if not self.built:
            self.build(None)
        return super().save(filepath, *args, **kwargs)

    def build_from_config(self, config):
        self.build(None)
        if not self.trainable:  # a saved trainable=False must also reach the layers just built
            for layer in self._layers:
                layer.trainable = False


class TaskModel(ShapeFreeBuild, CheckedSteps, keras.Model):
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

    def __init__(self, preprocessor=None, **kwargs):
        super().__init__(**kwargs)
        self.preprocessor = preprocessor

    def check_preprocessor(self):
        """Refuse an attached preprocessor that can make ids the model has no embedding for:
        a tokenizer with more ids than ``config.vocab_size``, or special ids past it. (Under
        XLA such an id would silently read the last embedding row.) Task models call this at
        the end of ``__init__``."""
        if self.preprocessor is None or not hasattr(self.preprocessor, "tokenizer"):
            return
        limit = self.config.vocab_size
        try:
            size = self.preprocessor.tokenizer.vocabulary_size()
        except ValueError:  # loading: the vocabulary arrives with the assets, after __init__
            return
        size = UNICODE_CODE_POINTS if size is None else int(size)
        if size > limit:
            raise ValueError(
                f"The preprocessor's tokenizer has {size} ids, more than the model's "
                f"vocab_size={limit}: ids from {limit} on have no embedding. Build the model with "
                f"vocab_size >= {size}, or a tokenizer with at most {limit} ids.")
        for name in ("start_id", "end_id", "separator_id", "pad_id"):
            value = getattr(self.preprocessor, name, None)
            if value is not None and not 0 <= value < limit:
                raise ValueError(f"The preprocessor's {name}={value} is outside the model's "
                                 f"vocabulary [0, vocab_size={limit}).")

    @property
    def num_label_classes(self):
        """Labels are class ids in ``[0, num_label_classes)`` (negative ones are ignored in the
        per-token models)."""
        return self.config.vocab_size

    def validate_inputs(self, inputs):
        """The checked tensors of ``inputs`` by key (:func:`check_inputs`, via the backbone)."""
        return self.backbone.validate_inputs(inputs)

    # --- text in: with a preprocessor, fit / evaluate / predict take raw strings ----------------
    # The strings are turned into inputs in the tf.data pipeline, outside the (XLA-compiled)
    # step, as KerasHub's tasks do: XLA does not compile string ops.

    def _is_text(self, x):
        if self.preprocessor is None or x is None:
            return False
        if isinstance(x, tf.data.Dataset):
            spec = x.element_spec
            spec = spec[0] if isinstance(spec, tuple) else spec
            return all(s.dtype == tf.string for s in tf.nest.flatten(spec))
        first = x[0] if isinstance(x, tuple) else x
        return isinstance(first, (list, np.ndarray, tf.Tensor)) and np.asarray(first).dtype.kind in "USO"

    def _text_dataset(self, x, y=None, sample_weight=None, batch_size=None, shuffle=False):
        """``x`` (strings, or a dataset whose first component is strings) as a dataset of model
        inputs; arrays are batched (``batch_size``, default 32) and, for ``fit``, shuffled."""
        if not isinstance(x, tf.data.Dataset):
            # Always a tuple, so that x itself may be a tuple (sentence pairs, seq2seq pairs).
            parts = tuple(part for part in (x, y, sample_weight) if part is not None)
            x = tf.data.Dataset.from_tensor_slices(parts)
            if shuffle:
                x = x.shuffle(len(parts[-1]), reshuffle_each_iteration=True)
            x = x.batch(batch_size or 32)

        def preprocess(*element):
            if getattr(self.preprocessor, "makes_labels", False):  # LM, seq2seq, tagging: it
                return self.preprocessor(element if len(element) > 1 else element[0])  # sees all
            inputs = self.preprocessor(element[0])
            return (inputs, *element[1:]) if len(element) > 1 else inputs

        return x.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def fit(self, x=None, y=None, batch_size=None, validation_data=None, sample_weight=None,
            shuffle=True, **kwargs):
        if self._is_text(x):
            shuffle = shuffle and not isinstance(x, tf.data.Dataset)  # a dataset arrives shuffled or not
            x = self._text_dataset(x, y, sample_weight, batch_size, shuffle=shuffle)
            y, sample_weight, batch_size, shuffle = None, None, None, False
        if isinstance(validation_data, tf.data.Dataset) and self._is_text(validation_data):
            validation_data = self._text_dataset(validation_data)
        elif isinstance(validation_data, tuple) and self._is_text(validation_data[0]):
            validation_data = self._text_dataset(*validation_data)
        if isinstance(x, tf.data.Dataset):  # it arrives shuffled or not; Keras would warn
            shuffle = False
        return super().fit(x, y, batch_size=batch_size, validation_data=validation_data,
                           sample_weight=sample_weight, shuffle=shuffle, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, sample_weight=None, **kwargs):
        if self._is_text(x):
            x, y, sample_weight, batch_size = self._text_dataset(x, y, sample_weight, batch_size), None, None, None
        return super().evaluate(x, y, batch_size=batch_size, sample_weight=sample_weight, **kwargs)

    def predict(self, x, batch_size=None, **kwargs):
        if number_of_examples(x) == 0:
            raise ValueError("`x` holds no examples (batch size 0); predict needs at least one.")
        if self._is_text(x):
            x, batch_size = self._text_dataset(x, batch_size=batch_size), None
        try:
            return super().predict(x, batch_size=batch_size, **kwargs)
        except UnboundLocalError:  # Keras' predict loop over a dataset that yielded no batch
            if isinstance(x, tf.data.Dataset):
                raise ValueError("The dataset passed to predict yielded no batches.") from None
            raise

    def get_config(self):
        config = super().get_config()
        if self.preprocessor is not None:
            config["preprocessor"] = keras.saving.serialize_keras_object(self.preprocessor)
        return config

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
        for key in ("backbone", "preprocessor"):  # the backbone model, the attached preprocessor
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
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
        loss = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                    training=training)
        return self._global_token_mean(loss, sample_weight)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        y, sample_weight = self._weigh(x, y, sample_weight)
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)
