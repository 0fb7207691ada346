"""Learning-rate schedules."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_transformers")
class TransformerSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The schedule of Vaswani et al. (2017), section 5.3: linear warmup, then 1/√step decay.

    ``lr(step) = scale · d_model^-0.5 · min(step^-0.5, step · warmup_steps^-1.5)``, with
    ``step`` counted from 1 (the optimizer's iteration + 1). The peak,
    ``scale · (d_model · warmup_steps)^-0.5``, is reached at ``step = warmup_steps``.

    Args:
        d_model: model width (``hidden_size``).
        warmup_steps: steps of linear warmup (4000 in the paper).
        scale: multiplier of the whole schedule (1.0 in the paper).

    Example:
        >>> schedule = TransformerSchedule(d_model=512, warmup_steps=4000)
        >>> optimizer = keras.optimizers.Adam(schedule, beta_1=0.9, beta_2=0.98, epsilon=1e-9)
    """

    def __init__(self, d_model, warmup_steps=4000, scale=1.0):
        if d_model <= 0 or warmup_steps <= 0:
            raise ValueError(f"`d_model` and `warmup_steps` must be positive, got {d_model} and {warmup_steps}.")
        self.d_model = int(d_model)
        self.warmup_steps = int(warmup_steps)
        self.scale = float(scale)

    def __call__(self, step):
        step = tf.cast(step, tf.float32) + 1.0
        return self.scale * self.d_model ** -0.5 * tf.minimum(
            tf.math.rsqrt(step), step * self.warmup_steps ** -1.5)

    def get_config(self):
        return {"d_model": self.d_model, "warmup_steps": self.warmup_steps, "scale": self.scale}
