"""Training helpers Keras lacks: the warmup schedule of the paper and label-smoothed sparse CE
(defined beside the task models, whose default loss it is)."""

from keras_transformers.models.losses import SparseCategoricalCrossentropy
from keras_transformers.training.schedules import TransformerSchedule

__all__ = ["SparseCategoricalCrossentropy", "TransformerSchedule"]
