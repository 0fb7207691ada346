"""Exporting models for serving; for now, the check that a SavedModel uses only ops TF Serving ships."""

from keras_transformers.export.serving_ops import (
    TF_TEXT_VERSION,
    assert_serving_ops,
    check_serving_ops,
    core_tf_ops,
    savedmodel_ops,
    serving_op_allowlist,
    tf_text_serving_ops,
)

__all__ = [
    "TF_TEXT_VERSION",
    "assert_serving_ops",
    "check_serving_ops",
    "core_tf_ops",
    "savedmodel_ops",
    "serving_op_allowlist",
    "tf_text_serving_ops",
]
