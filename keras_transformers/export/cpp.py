"""The C++ serving check: load an export the way TF Serving does, outside Python.

TF Serving is a C++ binary that calls ``tensorflow::LoadSavedModel`` (tag ``serve``) and
``Session::Run`` on a signature's tensors. ``serving_check.cc`` (beside this file) does exactly
that; :func:`build_serving_check` compiles it with g++ against the installed TensorFlow wheel
(its headers and ``libtensorflow_cc.so.2`` / ``libtensorflow_framework.so.2``), and
:func:`run_serving_check` runs a signature through it.

Build notes, each a failure seen without it: ``-Wl,--no-as-needed`` comes before the ``-l``
options, or the linker drops ``libtensorflow_cc`` whose static initializers register the
session factory ("No session factory registered"); the wheel ships no ``tag_constants.h``,
so the tag and signature are plain strings; tensorflow-text's op libraries are loaded with
``dlopen(RTLD_GLOBAL)`` before the model, as TF Serving links them statically.
"""

import hashlib
import os
import shutil
import subprocess
import tempfile

import numpy as np
import tensorflow as tf

from keras_transformers.export.verify import needs_tf_text, tf_text_op_libraries

SOURCE = os.path.join(os.path.dirname(__file__), "serving_check.cc")


def _compile_command(output):
    tf_dir = os.path.dirname(tf.__file__)
    return ["g++", "-O1", *tf.sysconfig.get_compile_flags(), "-Wno-deprecated-declarations", SOURCE,
            "-o", output, f"-L{tf_dir}", "-Wl,--no-as-needed", "-l:libtensorflow_cc.so.2",
            "-l:libtensorflow_framework.so.2", f"-Wl,-rpath,{tf_dir}", "-ldl"]


def build_serving_check(cache_dir=None):
    """Compile ``serving_check.cc`` (about 15 s) unless a build for this source and this
    TensorFlow exists in ``cache_dir`` (default ``~/.cache/keras_transformers``); returns
    the binary's path. Raises ``RuntimeError`` without g++ or when compiling fails."""
    compiler = shutil.which("g++")
    if compiler is None:
        raise RuntimeError("The C++ serving check needs g++ (e.g. `apt install g++`).")
    with open(SOURCE, "rb") as f:
        key = hashlib.sha256(f.read() + tf.__version__.encode() + tf.__file__.encode()).hexdigest()[:16]
    cache_dir = cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "keras_transformers")
    binary = os.path.join(cache_dir, f"serving_check-{key}")
    if os.path.exists(binary):
        return binary
    os.makedirs(cache_dir, exist_ok=True)
    partial = f"{binary}.{os.getpid()}.tmp"
    result = subprocess.run(_compile_command(partial), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"Compiling {SOURCE} failed:\n{result.stderr[-4000:]}")
    os.replace(partial, binary)  # atomic: a concurrent build never sees half a binary
    return binary


def run_serving_check(export_dir, signature, inputs, binary=None, timeout=600):
    """Run ``signature`` of the SavedModel in ``export_dir`` through the C++ loader.

    Args:
        export_dir: a version directory (``export_dir/<version>``).
        signature: e.g. ``"serving_default"``.
        inputs: ``{input name: array}``; strings as ``str`` or ``bytes``.
        binary: from :func:`build_serving_check` (built when ``None``).

    Returns:
        ``{output name: NumPy array}`` (strings as ``bytes`` objects).
    """
    binary = binary or build_serving_check()
    libraries = tf_text_op_libraries() if needs_tf_text(export_dir) else []
    with tempfile.TemporaryDirectory() as scratch:
        input_dir, output_dir = os.path.join(scratch, "in"), os.path.join(scratch, "out")
        os.makedirs(input_dir)
        os.makedirs(output_dir)
        for name, value in inputs.items():
            with open(os.path.join(input_dir, f"{name}.pb"), "wb") as f:
                f.write(tf.make_tensor_proto(np.asarray(value)).SerializeToString())
        result = subprocess.run([binary, str(export_dir), signature, input_dir, output_dir, *libraries],
                                capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        if result.returncode != 0:
            raise RuntimeError(f"The C++ serving check failed on {signature!r}:\n{result.stderr[-4000:]}")
        outputs = {}
        for file_name in sorted(os.listdir(output_dir)):
            proto = tf.make_tensor_proto(0)  # a TensorProto to parse into
            with open(os.path.join(output_dir, file_name), "rb") as f:
                proto.ParseFromString(f.read())
            outputs[file_name[:-len(".pb")]] = tf.make_ndarray(proto)
    return outputs


def verify_with_cpp(model, export_dir, binary=None):
    """Run every warmup request of ``export_dir`` through the C++ loader and compare with
    ``model`` as the export's own verification does; raises ``ExportVerificationError`` on a
    difference. Returns the number of requests checked."""
    import json

    from keras_transformers.export.verify import compare_outputs, reference_outputs
    from keras_transformers.export.warmup import read_warmup_requests

    binary = binary or build_serving_check()
    with open(os.path.join(export_dir, "assets", "export.json")) as f:
        settings = json.load(f)["generation"]
    requests = read_warmup_requests(export_dir)
    for name, inputs in requests:
        outputs = run_serving_check(export_dir, name, inputs, binary=binary)
        shape = {key: np.shape(value) for key, value in inputs.items()}
        compare_outputs(reference_outputs(model, name, inputs, settings), outputs,
                        f"C++ LoadSavedModel, signature {name!r} on inputs of shape {shape}")
    return len(requests)
