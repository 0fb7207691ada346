"""Does a SavedModel use only ops that a standard TF Serving build registers?

A standard TF Serving binary links TensorFlow's core ops and the op library of one
pinned tensorflow-text release: 2.12.1 in TF Serving 2.14-2.19, 2.20.0 from TF Serving
2.20. A SavedModel that uses any other op fails to load there ("Op type not registered")
although it loads fine in Python. KerasHub's default ``MultiSegmentPacker``
(``truncate="round_robin"``) is the common case: it calls ``TFText>RoundRobinTrim``, which
tensorflow-text 2.12.1 lacks (tensorflow/serving#2267).

What is allowed, :func:`serving_op_allowlist`, is the union of

* :func:`core_tf_ops`, the op names of the *installed* TensorFlow's ``tf.raw_ops``,
  computed at call time. This approximates the core ops of the TF Serving release of
  the same TensorFlow version (TF Serving links the core op library of its own TF
  version); serving with an older TF Serving than the TensorFlow that exported is not
  covered by this check.
* :func:`tf_text_serving_ops`, the 35 ops that tensorflow-text 2.12.1 registers, read
  from ``tf_text_2_12_1_ops.txt`` (generated from the real wheel by
  ``make_tf_text_op_list.py``). This is the strictest tf-text op set of TF Serving
  2.14+; tensorflow-text 2.21.1 registers these 35 with the same inputs, outputs and
  attrs, plus only the three ops that :func:`assert_serving_ops` explains.

Only op *names* are compared: an op whose definition gained an attr after the TF Serving
release (an older TF Serving than the exporting TensorFlow) is not detected.

:func:`savedmodel_ops` lists the op types a SavedModel uses; :func:`check_serving_ops`
returns the ones outside the allowlist; :func:`assert_serving_ops` raises a
``ValueError`` naming them. The export code calls the latter after writing a SavedModel.
"""

import functools
import os
from importlib import resources

import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import saved_model_pb2

TF_TEXT_VERSION = "2.12.1"
"""The tensorflow-text release whose ops :func:`tf_text_serving_ops` lists."""

_TF_TEXT_OP_FILE = "tf_text_2_12_1_ops.txt"

# tf-text ops that 2.12.1 lacks, with the first TF Serving release known to ship them
# (TF Serving 2.20 links tensorflow-text 2.20.0, which registers all three) and the
# Python API that emits them.
_LATER_TF_TEXT_OPS = {
    "TFText>RoundRobinTrim": (
        "2.20",
        "emitted by tensorflow_text.RoundRobinTrimmer.trim, e.g. in KerasHub's MultiSegmentPacker with its "
        'default truncate="round_robin"; truncate="waterfall" (WaterfallTrimmer) uses core ops only',
    ),
    "TFText>RoundRobinGenerateMasks": (
        "2.20",
        "emitted by tensorflow_text.RoundRobinTrimmer.generate_mask",
    ),
    "TFText>Utf8Binarize": ("2.20", "emitted by tensorflow_text.utf8_binarize"),
}


@functools.lru_cache(maxsize=None)
def tf_text_serving_ops():
    """The op names that tensorflow-text 2.12.1 registers (TF Serving 2.14-2.19), as a frozenset.

    Read from the package data file ``tf_text_2_12_1_ops.txt`` (``#`` lines are comments).

    Example:
        >>> "WordpieceTokenizeWithOffsets" in tf_text_serving_ops()
        True
        >>> "TFText>RoundRobinTrim" in tf_text_serving_ops()
        False
    """
    text = resources.files(__package__).joinpath(_TF_TEXT_OP_FILE).read_text(encoding="utf-8")
    names = (line.strip() for line in text.splitlines())
    return frozenset(name for name in names if name and not name.startswith("#"))


def core_tf_ops():
    """The core op names of the installed TensorFlow, as a frozenset, computed on each call.

    These are the names of ``tf.raw_ops``: every op the installed TensorFlow registers and
    exposes to Python. Unlike TensorFlow's live op registry, this set does not grow when
    ``tensorflow_text`` (whose older ops, such as ``WordpieceTokenizeWithOffsets``, carry
    no ``TFText>`` namespace) or another custom op library is loaded, so the result does
    not depend on import order. It leaves out TensorFlow's internal, test, TPU and DTensor
    ops, which do not appear in SavedModels written from Keras or ``tf.function``; names
    with a ``>`` namespace are excluded in any case.

    It stands in for the core ops of TF Serving, which links the core op library of its
    own TensorFlow version: serve with the TF Serving release matching the installed TF.

    Example:
        >>> {"MatMul", "StatefulPartitionedCall"} <= core_tf_ops()
        True
    """
    return frozenset(name for name in dir(tf.raw_ops) if not name.startswith("_") and ">" not in name)


def serving_op_allowlist():
    """The ops a standard TF Serving build registers: core TensorFlow + tensorflow-text 2.12.1.

    Returns a frozenset: :func:`core_tf_ops` (of the installed TensorFlow) united with
    :func:`tf_text_serving_ops`. Pass a superset of it as ``allowlist`` to
    :func:`check_serving_ops` for a TF Serving build that links more ops.

    Example:
        >>> allowed = serving_op_allowlist()
        >>> "MatMul" in allowed, "FastWordpieceTokenizeWithOffsets" in allowed
        (True, True)
        >>> "TFText>RoundRobinTrim" in allowed
        False
    """
    return core_tf_ops() | tf_text_serving_ops()


def _read_saved_model(export_dir):
    export_dir = os.fspath(export_dir)
    saved_model = saved_model_pb2.SavedModel()
    binary = os.path.join(export_dir, "saved_model.pb")
    text = os.path.join(export_dir, "saved_model.pbtxt")
    if tf.io.gfile.exists(binary):
        with tf.io.gfile.GFile(binary, "rb") as f:
            saved_model.ParseFromString(f.read())
    elif tf.io.gfile.exists(text):
        with tf.io.gfile.GFile(text, "r") as f:
            text_format.Parse(f.read(), saved_model)
    else:
        raise FileNotFoundError(f"no saved_model.pb or saved_model.pbtxt in {export_dir!r}")
    return saved_model


def savedmodel_ops(export_dir):
    """Every op type a SavedModel uses, as a sorted list of names.

    Reads ``saved_model.pb`` (or ``saved_model.pbtxt``) as a ``SavedModel`` proto, without
    loading any graph, and collects the ``op`` of every node of every meta graph's
    ``graph_def`` and of every function in its function library. The library holds every
    function, however deeply nested (called through ``PartitionedCall``, ``If``, ``While``
    or a gradient), so its op types are all found. Nodes that call a library function
    directly (their ``op`` is the function's name) are not op types and are left out.

    Example:
        >>> savedmodel_ops("/tmp/my_model")  # doctest: +SKIP
        ['Const', 'Identity', 'MatMul', 'NoOp', 'Placeholder', 'StatefulPartitionedCall', ...]
    """
    saved_model = _read_saved_model(export_dir)
    ops = set()
    for meta_graph in saved_model.meta_graphs:
        graph_def = meta_graph.graph_def
        ops.update(node.op for node in graph_def.node)
        function_names = set()
        for function in graph_def.library.function:
            function_names.add(function.signature.name)
            ops.update(node.op for node in function.node_def)
        ops -= function_names
    return sorted(ops)


def check_serving_ops(export_dir, allowlist=None):
    """The op types of the SavedModel in `export_dir` that TF Serving lacks, as a sorted list.

    Args:
        export_dir: directory holding ``saved_model.pb``.
        allowlist: the op names allowed; default :func:`serving_op_allowlist` (core ops of
            the installed TensorFlow + tensorflow-text 2.12.1).

    Returns:
        The names of the ops :func:`savedmodel_ops` finds outside ``allowlist``; empty when
        the SavedModel should load in TF Serving 2.14+ of the matching TensorFlow version.
        Use :func:`assert_serving_ops` to raise an error that explains each one instead.

    Example:
        >>> check_serving_ops("/tmp/packer_model")  # doctest: +SKIP
        ['TFText>RoundRobinTrim']
    """
    if allowlist is None:
        allowlist = serving_op_allowlist()
    return [op for op in savedmodel_ops(export_dir) if op not in allowlist]


def _explain(op):
    if op in _LATER_TF_TEXT_OPS:
        serving_version, origin = _LATER_TF_TEXT_OPS[op]
        return (
            f"not in tensorflow-text {TF_TEXT_VERSION} (TF Serving 2.14-2.19); TF Serving {serving_version}+ "
            f"ships it. It is {origin}"
        )
    if op.startswith("TFText>"):
        return f"a tensorflow-text op newer than {TF_TEXT_VERSION} (TF Serving 2.14-2.19 lack it)"
    if ">" in op:
        namespace = op.split(">", 1)[0]
        return f"from the custom op library of namespace {namespace!r}, which standard TF Serving does not link"
    if op in tf_text_serving_ops() or op in core_tf_ops():
        return "not in the given allowlist"
    return (
        f"neither a core op of TensorFlow {tf.__version__} nor a tensorflow-text {TF_TEXT_VERSION} op "
        "(a custom op library, or a newer tensorflow-text op without a namespace)"
    )


def assert_serving_ops(export_dir, allowlist=None):
    """Raises ``ValueError`` if the SavedModel in `export_dir` uses an op TF Serving lacks.

    Runs :func:`check_serving_ops` (same arguments) and, if it finds any op, raises one
    ``ValueError`` that names each op and why it is missing, with the TF Serving release
    that adds it where known (``TFText>RoundRobinTrim``, ``TFText>RoundRobinGenerateMasks``
    and ``TFText>Utf8Binarize`` arrive with TF Serving 2.20). Returns ``None`` otherwise.

    Example:
        >>> tf.saved_model.save(module, "/tmp/my_model")  # doctest: +SKIP
        >>> assert_serving_ops("/tmp/my_model")  # doctest: +SKIP
        Traceback (most recent call last):
        ValueError: The SavedModel in '/tmp/my_model' uses 1 op outside the ops of a standard TF Serving build ...
          - TFText>RoundRobinTrim: not in tensorflow-text 2.12.1 (TF Serving 2.14-2.19); ...
    """
    missing = check_serving_ops(export_dir, allowlist)
    if not missing:
        return
    if allowlist is None:
        where = (
            f"outside the ops of a standard TF Serving build (core TensorFlow + tensorflow-text "
            f"{TF_TEXT_VERSION}, as in TF Serving 2.14-2.19); it would fail to load there "
            '("Op type not registered")'
        )
    else:
        where = "outside the given allowlist"
    plural = "s" if len(missing) > 1 else ""
    lines = [f"The SavedModel in {os.fspath(export_dir)!r} uses {len(missing)} op{plural} {where}:"]
    lines += [f"  - {op}: {_explain(op)}" for op in missing]
    raise ValueError("\n".join(lines))


def xla_functions(export_dir):
    """Names of the SavedModel's functions marked ``_XlaMustCompile`` (they run only with
    XLA, which TF Serving on CPU enables only with ``--xla_cpu_compilation_enabled``, and
    which tf2onnx cannot convert)."""
    graph = _read_saved_model(export_dir).meta_graphs[0].graph_def
    return sorted(function.signature.name for function in graph.library.function
                  if function.attr["_XlaMustCompile"].b)


def assert_no_xla(export_dir):
    """Raise a ``ValueError`` naming the functions of :func:`xla_functions`, if any."""
    marked = xla_functions(export_dir)
    if marked:
        raise ValueError(f"The SavedModel in {export_dir} has {len(marked)} functions marked "
                         f"_XlaMustCompile, which TF Serving on CPU cannot run: {marked[:5]}. Trace "
                         "the model under keras_transformers.ops.jit_compile_scope(False).")
