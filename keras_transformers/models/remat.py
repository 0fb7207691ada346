"""Rematerialization: keep a block's input, not its activations; recompute them in backward.

Training a stack of ``N`` blocks keeps every block's intermediate activations (attention
projections, feed-forward hidden states, norms, dropout masks) until the backward pass. With
``TransformerConfig(remat=True)`` a block keeps only its inputs: the backward pass runs the
block again under a tape and differentiates that, so the stack's activation memory is one
block's plus ``N`` residual streams, for one more forward pass of compute (Chen et al., 2016,
"Training deep nets with sublinear memory cost").

It is ``tf.recompute_grad`` with one thing added: dropout draws its seeds from Keras
``SeedGenerator`` state variables, which the forward pass advanced. The recomputation first
puts those states back where they were, so it draws the same dropout masks, and the gradients
are exactly the ones without remat (it leaves the states where the forward pass left them).

Under XLA (the default compile path) the recomputation needs one more thing. The recomputed
block reads the same input tensor as the forward block, so nothing orders it after the
backward pass has reached the block: XLA's scheduler hoisted every block's recomputation into
the forward pass (and CSE may merge the two), and a deep stack held all of its activations
again (measured: 8 blocks of width 256 at 2,048 tokens, +1.76 GB with remat, +1.70 GB
without). (``tf.recompute_grad`` was not measured here.) An XLA optimization barrier does not
help on CPU, whose compiler drops barriers before scheduling. So the recomputation reads
``input + zero``, where ``zero`` is computed from the incoming gradient (exactly 0.0, but not
foldable by XLA): a data dependency, which no compiler pass may reorder or merge, puts each
block's recomputation after its output gradient exists (the same stack: +0.55 GB).
"""

import tensorflow as tf
from tensorflow.python.eager import record  # tf.recompute_grad's own way to stop the tapes


def _seed_states(layer):
    """The int state variables of every ``SeedGenerator`` under ``layer`` (dropout seeds)."""
    return [variable for variable in layer.variables
            if "seed_generator" in variable.path and variable.dtype in ("uint32", "int32", "int64")]


def zero_after(tensor):
    """A float32 scalar 0.0 that depends on ``tensor`` (so it is computed after it).

    ``0 * t`` of one element, where XLA does not fold ``0 * t`` (NaN and inf would not give
    0): kept exactly 0.0 when that element is not finite, so that an overflowed gradient (a
    loss-scaled step) stays an overflow and does not turn the activations into NaN."""
    first = tf.reduce_sum(tf.cast(tf.reshape(tensor, [-1])[:1], tf.float32))
    return tf.where(tf.math.is_finite(first), 0.0 * first, 0.0)


def rematerialized(block, sequence, differentiable=None, **arguments):
    """``block(sequence, **differentiable, **arguments)``, activations recomputed in backward.

    Args:
        block: a built Keras layer (an encoder or decoder block).
        sequence: ``(batch, seq, hidden)``, the block's first argument.
        differentiable: keyword tensors the gradient must also reach (a seq2seq decoder's
            ``encoder_sequence``); ``None`` values are passed as they are.
        arguments: everything else (masks, ``positions``, ``training``), passed as it is.

    Returns: the block's output ``(batch, seq, hidden)``.

    Example:
        >>> block = DecoderBlock(num_heads=4, intermediate_size=64); block.build((None, None, 32))
        >>> rematerialized(block, tf.zeros([2, 5, 32]), training=True).shape
        TensorShape([2, 5, 32])
    """
    differentiable = differentiable or {}
    names = [name for name, tensor in differentiable.items() if tensor is not None]
    arguments.update({name: None for name, tensor in differentiable.items() if tensor is None})
    seed_states = _seed_states(block)

    def run(sequence, *tensors):
        return block(sequence, **dict(zip(names, tensors)), **arguments)

    @tf.custom_gradient
    def forward(*inputs):
        states_before = [tf.identity(state.value) for state in seed_states]
        # Not recorded on the caller's tape: the forward keeps none of its activations (in
        # eager mode the tape would otherwise hold them until the backward pass).
        with tf.control_dependencies(states_before), record.stop_recording():
            outputs = run(*inputs)

        def grad(d_outputs, variables=None):
            variables = list(variables or [])
            states_after = [tf.identity(state.value) for state in seed_states]
            with tf.control_dependencies(states_after):
                for state, value in zip(seed_states, states_before):
                    state.assign(value)  # the same dropout masks as the forward pass
            float_variables = [v for v in variables if v.dtype.is_floating]
            # The recomputation waits for d_outputs (see the module docstring).
            zero = zero_after(tf.nest.flatten(d_outputs)[0])
            anchored = [tensor + tf.cast(zero, tensor.dtype) for tensor in inputs]
            with tf.GradientTape() as tape:
                tape.watch(anchored)
                recomputed = run(*anchored)
            gradients = tape.gradient(recomputed, anchored + float_variables,
                                      output_gradients=d_outputs)
            for state, value in zip(seed_states, states_after):
                state.assign(value)
            by_variable = dict(zip((id(v) for v in float_variables), gradients[len(inputs):]))
            return gradients[:len(inputs)], [by_variable.get(id(v)) for v in variables]

        return outputs, grad

    return forward(sequence, *(differentiable[name] for name in names))
