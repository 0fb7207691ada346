"""What every trainable model shares: default loss/metrics, and padding that never counts."""

import contextlib
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_transformers.models.losses import SparseCategoricalCrossentropy
from keras_transformers.models.multi_worker import install_multi_worker_fix
from keras_transformers.ops.checks import check_ids_in_range

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

    def __init__(self, preprocessor=None, **kwargs):
        super().__init__(**kwargs)
        self.preprocessor = preprocessor
        self._xla_steps = None  # with XLA: "train" / "test" / "predict" -> its XLA-compiled step

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

    # --- checks on the compiled path ----------------------------------------------------------
    # XLA cannot assert: inside a jit_compile=True step the input checks are not built, and a
    # gather clamps an out-of-range id to the last row. So with XLA on, Keras' per-step
    # function is built without XLA, checks the batch (ids, masks, labels) there, and calls the
    # train/test/predict step compiled with XLA on its own: nothing runs on an unchecked batch.

    def _make_function(self, step_function):  # Keras' builder of the train and test functions
        with self._steps_compiled_inside():
            return super()._make_function(step_function)

    def make_predict_function(self, force=False):
        if self.predict_function is not None and not force:
            return self.predict_function
        with self._steps_compiled_inside():
            return super().make_predict_function(force)

    @contextlib.contextmanager
    def _steps_compiled_inside(self):
        use_xla = self.jit_compile and not self.run_eagerly
        strategy = self.distribute_strategy
        replicas = strategy.num_replicas_in_sync
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            install_multi_worker_fix()
        # The mirrored strategies' optimizer update is a merge_call, which cannot run inside the
        # nested XLA function, even with one replica.
        mirrored = isinstance(strategy, (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy))
        if use_xla and (replicas > 1 or mirrored):
            if not getattr(self, "_told_no_xla_under_strategy", False):
                warnings.warn(
                    f"{type(self).__name__}: jit_compile=True falls back to a TensorFlow graph "
                    f"(no XLA) under {type(strategy).__name__} with {replicas} replica(s): "
                    "TensorFlow cannot compile a step whose gradients are all-reduced across "
                    "replicas (a merge_call) inside strategy.run. Inputs are still checked.", stacklevel=4)
                self._told_no_xla_under_strategy = True
            use_xla = False
        self._xla_steps = {} if use_xla else None
        jit_compile, self._jit_compile = self._jit_compile, False
        try:
            yield
        finally:
            self._jit_compile = jit_compile

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Under a distribution strategy Keras builds from the first batch reduced with "MEAN"
        # over the replicas, which turns integer ids into floats (and the build then fails
        # on float token ids): build from the first replica's part of it instead.
        if iterator is not None and self._distribute_strategy is not None:
            for _, _, batches in iterator:
                data_batch = next(batches)
                break
            local = self.distribute_strategy.experimental_local_results
            data_batch = tf.nest.map_structure(
                lambda value: local(value)[0] if isinstance(value, tf.distribute.DistributedValues) else value,
                data_batch)
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def _checked_step(self, kind, step, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if self._xla_steps is not None and hasattr(x, "keys"):
            checked = self.validate_inputs(x)
            x = {key: checked[key] for key in x}
        if y is not None and not isinstance(y, (dict, list, tuple)) and self._counts_classes():
            y = self._checked_labels(x, tf.convert_to_tensor(y))
        data = keras.utils.pack_x_y_sample_weight(x, y, sample_weight)
        if self._xla_steps is None:  # eager, or compiled without XLA: the checks are in the step
            return step(data)
        if kind not in self._xla_steps:
            self._xla_steps[kind] = tf.function(step, jit_compile=True, reduce_retracing=True)
        return self._xla_steps[kind](data)

    def _checked_labels(self, x, y):
        """``y``, checked to be class ids in ``[0, num_label_classes)``; per-token models check
        only the labels that count (padding positions may hold anything, and negative labels
        are ignored)."""
        if not y.dtype.is_integer:
            return y
        limit_name = "num_classes" if hasattr(self, "num_classes") else "vocab_size"
        counted = None
        if self.is_token_level and hasattr(x, "keys") and self.labels_padding_mask in x:
            counted = tf.cast(x[self.labels_padding_mask], tf.bool)
            if counted.shape.rank != y.shape.rank:
                counted = None
        if counted is None:
            return check_ids_in_range(y, self.num_label_classes, "labels", limit_name, "the classes",
                                      allow_negative=self.is_token_level)
        checked = check_ids_in_range(tf.where(counted, y, tf.constant(-1, y.dtype)), self.num_label_classes,
                                     "labels", limit_name, "the classes", allow_negative=True)
        return tf.where(counted, checked, y)  # the labels as given, made to depend on the check

    def _counts_classes(self):
        """Whether the labels are class ids for the default loss (not a user's regression loss)."""
        return isinstance(getattr(self, "loss", None), SparseCategoricalCrossentropy) or self.loss is None

    def train_step(self, data):
        return self._checked_step("train", super().train_step, data)

    def test_step(self, data):
        return self._checked_step("test", super().test_step, data)

    def predict_step(self, data):
        return self._checked_step("predict", super().predict_step, data)

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

    def _global_token_mean(self, loss, weights):
        """Under a strategy with R replicas, turn each replica's mean over its own counted
        tokens into its share of the mean over the *global* batch's counted tokens.

        Keras divides each replica's loss by R and sums the gradients, which gives the mean of
        per-replica means: wrong when replicas hold different numbers of real tokens. With
        ``W_r`` replica r's weight sum and ``W = Σ W_r``, scaling replica r's mean by
        ``R·W_r / W`` makes the sum ``Σ_r Σ_tokens w·loss / W``, as on one device.
        """
        context = tf.distribute.get_replica_context()
        if weights is None or context is None or context.num_replicas_in_sync == 1:
            return loss
        local = tf.reduce_sum(tf.cast(weights, loss.dtype))
        total = context.all_reduce(tf.distribute.ReduceOp.SUM, local)
        share = tf.math.divide_no_nan(local * context.num_replicas_in_sync, total)
        return loss * share

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        y, sample_weight = self._weigh(x, y, sample_weight)
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)
