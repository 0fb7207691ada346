"""Shipping a model: a verified SavedModel for TF Serving, ONNX for ONNX Runtime, and the
checks behind both (TF Serving's op set, a TensorFlow-only process, the C++ loader)."""

from keras_transformers.export.atomic import ExportInProgressError
from keras_transformers.export.onnx import export_onnx
from keras_transformers.export.savedmodel import export_savedmodel
from keras_transformers.export.serving_ops import (
    TF_TEXT_VERSION,
    assert_no_xla,
    assert_serving_ops,
    check_serving_ops,
    core_tf_ops,
    savedmodel_ops,
    serving_op_allowlist,
    tf_text_serving_ops,
    xla_functions,
)
from keras_transformers.export.verify import ExportVerificationError
from keras_transformers.export.warmup import read_warmup_requests

__all__ = [
    "ExportInProgressError",
    "ExportVerificationError",
    "TF_TEXT_VERSION",
    "assert_no_xla",
    "assert_serving_ops",
    "check_serving_ops",
    "core_tf_ops",
    "export_onnx",
    "export_savedmodel",
    "read_warmup_requests",
    "savedmodel_ops",
    "serving_op_allowlist",
    "tf_text_serving_ops",
    "xla_functions",
]
