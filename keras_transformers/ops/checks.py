"""In-graph value checks that stay out of XLA clusters, where TensorFlow drops them anyway."""

import tensorflow as tf

try:  # TensorFlow's own test of "inside tf.function(jit_compile=True)"; private, so guarded.
    from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext as _in_xla
except ImportError:  # pragma: no cover
    _in_xla = None


def in_xla_context():
    """Whether ops built now will be compiled by XLA (inside a ``jit_compile=True`` function)."""
    if tf.executing_eagerly() or _in_xla is None:
        return False
    return bool(_in_xla(tf.compat.v1.get_default_graph()))


def with_graph_assertions(tensor, make_assertions):
    """``tensor``, made to depend on the assertion ops ``make_assertions()`` returns.

    The assertions raise ``InvalidArgumentError`` with their message when the graph runs.
    Under XLA they are not built: XLA ignores ``Assert`` (and logs a warning for each one).
    """
    if in_xla_context():
        return tensor
    with tf.control_dependencies(make_assertions()):
        return tf.identity(tensor)
