"""Training helpers Keras lacks: the warmup schedule of the paper and label-smoothed sparse CE."""

from keras_transformers.training.losses import SparseCategoricalCrossentropy
from keras_transformers.training.schedules import TransformerSchedule

__all__ = ["SparseCategoricalCrossentropy", "TransformerSchedule"]
