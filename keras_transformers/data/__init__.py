"""Data: small bundled corpora (readers and tf.data pipelines come with the text issue)."""

from keras_transformers.data.corpora import tiny_shakespeare

__all__ = ["tiny_shakespeare"]
