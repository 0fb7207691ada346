"""The export job: :func:`export` writes a verified SavedModel or ONNX files."""

import os

from keras_transformers.jobs.common import JobError
from keras_transformers.jobs.generate_job import stop_token_ids
from keras_transformers.jobs.models import load_model
from keras_transformers.models import CausalLM, Seq2Seq


def export(format, model, output, *, version=None, generation=None, xla=False, verify=True, opset=17):
    """Export ``model`` (a path or a loaded model) as a SavedModel (``format="savedmodel"``:
    ``output/<version>``) or ONNX files (``"onnx"``: the directory ``output``). Returns the path.

    Generative models stop at :func:`stop_token_ids` and generate up to 32 tokens (at most half
    the model's context) unless ``generation`` says otherwise.
    """
    if format not in ("savedmodel", "onnx"):
        raise JobError(f"format must be savedmodel or onnx, got {format!r}")
    if format == "onnx":
        try:
            import tf2onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as error:
            raise JobError(f'export onnx needs {error.name}: pip install "keras_transformers[onnx]"') from None
    from keras_transformers import export as export_lib

    model = load_model(model) if isinstance(model, (str, os.PathLike)) else model
    if format == "onnx":
        return export_lib.export_onnx(model, output, opset=opset, verify=verify)
    generation = dict(generation or {})
    if isinstance(model, (CausalLM, Seq2Seq)) and model.preprocessor is not None:
        generation.setdefault("stop_token_ids", stop_token_ids(model))
        # The export's default (32 new tokens) leaves a short-context model no room for a prompt.
        generation.setdefault("max_new_tokens", min(32, max(1, model.config.max_length // 2)))
    return export_lib.export_savedmodel(model, output, version, generation=generation or None,
                                        jit_compile=xla, verify=verify)
