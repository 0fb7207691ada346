"""The train / test / predict steps of the task models: checked outside XLA, compiled with it,
and right under ``tf.distribute``.

XLA cannot assert: inside a ``jit_compile=True`` step the input checks are not built, and a
gather clamps an out-of-range id to the last row. So with XLA on, Keras' per-step function is
built without XLA, checks the batch (ids, masks, labels) there, and calls the train/test/predict
step compiled with XLA on its own: nothing runs on an unchecked batch. Under the mirrored
strategies the step stays a TensorFlow graph (their gradient all-reduce cannot run inside a
nested XLA function), the per-token loss is normalized over the global batch, and gradient
clipping acts on the all-reduced (global) gradient.
"""

import contextlib
import warnings

import keras
import tensorflow as tf

from keras_transformers.models.losses import SparseCategoricalCrossentropy
from keras_transformers.models.multi_worker import install_multi_worker_fix
from keras_transformers.ops.checks import check_ids_in_range


class CheckedSteps:
    """Mixed into :class:`~keras_transformers.models.task.TaskModel` (before ``keras.Model``).

    Needs of the model: ``validate_inputs(x)``, ``num_label_classes``, ``is_token_level`` and
    ``labels_padding_mask``.
    """

    _xla_steps = None  # with XLA: "train" / "test" / "predict" -> its XLA-compiled step

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
        if replicas > 1 and getattr(self, "optimizer", None) is not None:
            _clip_after_the_all_reduce(self.optimizer)
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
        # Under a distribution strategy Keras builds from the first batch, which it draws from
        # a first iterator over the data: a shuffled dataset (reshuffle_each_iteration) then
        # trains on its second order, not the one a run without a strategy sees. And it
        # reduces that batch with "MEAN" over the replicas, which turns integer ids into
        # floats (the build then fails on float token ids). Only shapes and dtypes are
        # needed: build from a dataset's element_spec, else from the first replica's part of
        # the first batch.
        if iterator is not None and self._distribute_strategy is not None:
            dataset = getattr(getattr(iterator, "data_adapter", None), "_dataset", None)
            if isinstance(dataset, tf.data.Dataset):  # a tf.data input (arrays: Keras' own path)
                return super()._maybe_symbolic_build(data_batch=dataset.element_spec)
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


def _scaled(gradient, factor):
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(gradient.values * tf.cast(factor, gradient.values.dtype), gradient.indices,
                                gradient.dense_shape)
    return gradient * tf.cast(factor, gradient.dtype)


def _clip_after_the_all_reduce(optimizer):
    """Make the optimizer's ``clipnorm`` / ``global_clipnorm`` / ``clipvalue`` clip the global
    gradient under R > 1 replicas, as on one device (done once, before the train step is traced).

    Keras 3 clips each replica's gradient, then sums them across replicas: the clip then
    bounds each replica's partial sum, not the gradient of the batch (tf.keras 2 refused
    clipping under a strategy for this reason, tensorflow#33929). Here the clip first sums the
    gradients across the replicas itself, clips that sum, and hands Keras the clipped global
    gradient on replica 0 and zeros elsewhere, so that Keras' own sum gives it back exactly.
    Costs one more all-reduce of the gradients a step, only when clipping under replicas.
    (Replicas are traced in threads of their own: the replica context is looked up per call.)
    """
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # a LossScaleOptimizer's
    if inner is None or getattr(inner, "_clips_after_the_all_reduce", False):
        return
    keras_clip = inner._clip_gradients

    def clip(gradients):
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return keras_clip(gradients)
        summed = iter(context.all_reduce(tf.distribute.ReduceOp.SUM, [g for g in gradients if g is not None]))
        gradients = [None if g is None else next(summed) for g in gradients]
        first = tf.equal(context.replica_id_in_sync_group, 0)
        return [None if g is None else _scaled(g, first) for g in keras_clip(gradients)]

    if inner.clipnorm or inner.global_clipnorm or inner.clipvalue:
        inner._clip_gradients = clip
    inner._clips_after_the_all_reduce = True
