"""What the alignment models (:class:`~keras_transformers.training.dpo.DPO`,
:class:`~keras_transformers.training.grpo.GRPOUpdate`) share: a Keras model whose loss is its
own objective over a policy ``CausalLM``, stepped with the task models' checked, XLA-compiled
steps, and whose metrics are the trackers it updates in ``compute_loss``."""

import keras

from keras_transformers.models.steps import CheckedSteps


class PolicyObjective(CheckedSteps, keras.Model):
    """Subclasses set ``self.trackers`` (``{name: keras.metrics.Mean}``), implement
    ``validate_inputs``, ``call`` and ``compute_loss`` (updating the trackers)."""

    trackers = {}

    def compile(self, optimizer="adam", run_eagerly=False, jit_compile="auto", **kwargs):
        """As ``keras.Model.compile``, with XLA on by default (as every task model); no loss or
        metrics to give: the loss is the objective's, the metrics its trackers."""
        if jit_compile == "auto":
            jit_compile = not run_eagerly
        super().compile(optimizer=optimizer, run_eagerly=run_eagerly, jit_compile=jit_compile, **kwargs)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return self.get_metrics_result()

    @property
    def metrics(self):
        return [*super().metrics, *self.trackers.values()]
