"""Text generation loops."""

from keras_transformers.generation.sampling import generate, sample_next_token

__all__ = ["generate", "sample_next_token"]
