"""The frozen reference of preference tuning (DPO, GRPO): a copy of the policy made before
training, or, for a policy with LoRA adapters, the policy itself with its adapters switched off
(no second copy of the weights). Its log-probabilities never carry gradients."""

import tensorflow as tf

from keras_transformers.training.lora import adapters_disabled, lora_variables
from keras_transformers.training.preferences import token_log_probs


def frozen_copy(model):
    """A new model of ``model``'s class and config with a copy of its weights, not trainable."""
    copy = model.__class__.from_config(model.get_config())
    copy.build()
    copy.set_weights(model.get_weights())
    copy.trainable = False
    return copy


def make_reference(policy, reference=None):
    """``(reference, adapters_as_reference)``: ``reference`` frozen, or by default a
    :func:`frozen_copy` of ``policy``, or ``(None, True)`` for a policy with LoRA adapters."""
    if reference is None and lora_variables(policy):
        return None, True
    reference = frozen_copy(policy) if reference is None else reference
    reference.trainable = False
    return reference, False


def reference_token_log_probs(policy, reference, token_ids, padding_mask):
    """:func:`~keras_transformers.training.preferences.token_log_probs` of the reference
    (``reference=None``: the policy with its adapters off), without gradients."""
    if reference is None:
        with adapters_disabled(policy):
            gathered, log_probs = token_log_probs(policy, token_ids, padding_mask)
    else:
        gathered, log_probs = token_log_probs(reference, token_ids, padding_mask)
    return tf.stop_gradient(gathered), tf.stop_gradient(log_probs)
