"""Direct Preference Optimization (Rafailov et al., 2023) with plain ``compile()`` / ``fit()``.

For a prompt ``x`` with a preferred completion ``y_w`` and a dispreferred one ``y_l``, a policy
``π`` (the ``CausalLM`` being tuned) and a frozen reference ``π_ref`` (the policy before tuning):

    h = [log π(y_w|x) - log π_ref(y_w|x)] - [log π(y_l|x) - log π_ref(y_l|x)]
    DPO:  loss = -(1 - ε)·log σ(β·h) - ε·log σ(-β·h)     (ε: label smoothing, "conservative DPO")
    IPO:  loss = (h̄ - 1/(2β))²                            (Azar et al., 2023; h̄ with per-token
                                                            mean log-probs, as TRL computes it)

``log π(y|x)`` sums the completion's token log-probabilities (the prompt and padding never
count; :func:`~keras_transformers.training.preferences.completion_log_probs`). ``β·(log π -
log π_ref)`` is the implicit reward of a completion; ``fit`` logs

* ``reward_accuracy``: the share of pairs whose chosen completion has the higher reward;
* ``reward_margin``: the mean of chosen minus rejected reward;
* ``chosen_log_prob``, ``rejected_log_prob``: the policy's summed log-probabilities;
* ``kl``: the policy's mean per-token KL divergence to the reference over the completion tokens,
  ``Σ_v π(v) (log π(v) - log π_ref(v))`` (exact, over the vocabulary; not tracked when the
  reference log-probabilities are precomputed).

The reference (:mod:`~keras_transformers.training.reference`) is a frozen copy of the policy
made at construction, or, for a policy with LoRA adapters
(:func:`~keras_transformers.training.lora.enable_lora`), the policy itself with its adapters
switched off: no second copy of the weights. Its log-probabilities are computed without
gradients, or read from the batch (``reference_chosen_log_prob`` and
``reference_rejected_log_prob``, see :meth:`DPO.with_reference_log_probs`).

Example:
    >>> dpo = DPO(policy, beta=0.1)
    >>> dpo.compile(optimizer=keras.optimizers.Adam(1e-4))       # XLA on, as every task model
    >>> dpo.fit({"prompt": prompts, "chosen": good, "rejected": bad}, batch_size=16, epochs=1)
    >>> policy.generate_text(["The film was"], max_new_tokens=20)  # the tuned policy
"""

import keras
import numpy as np
import tensorflow as tf

from keras_transformers.ops.checks import check_mask_values
from keras_transformers.training.objective import PolicyObjective
from keras_transformers.training.preferences import SIDES, completion_log_probs, counted_tokens, tokenize_preferences
from keras_transformers.training.reference import make_reference, reference_token_log_probs

LOSS_TYPES = ("sigmoid", "ipo")
REFERENCE_KEYS = tuple(f"reference_{side}_log_prob" for side in SIDES)


def dpo_loss(h, beta, loss_type="sigmoid", label_smoothing=0.0):
    """The per-pair loss of the module docstring for the log-ratio difference ``h``."""
    if loss_type == "ipo":
        return tf.square(h - 1.0 / (2.0 * beta))
    logits = beta * h
    return -(1.0 - label_smoothing) * tf.math.log_sigmoid(logits) - label_smoothing * tf.math.log_sigmoid(-logits)


class DPO(PolicyObjective):
    """Tunes ``policy`` on preference pairs with the DPO (or IPO) loss; see the module docstring.

    Args:
        policy: a built ``CausalLM``; its weights are the ones trained.
        reference: the frozen reference; default: a copy of ``policy`` (``frozen_copy``), or
            the policy with its adapters off when it has LoRA adapters.
        beta: ``β``, the strength of the pull towards the reference (0.1 is common).
        loss_type: ``"sigmoid"`` (DPO) or ``"ipo"``.
        label_smoothing: ``ε`` in ``[0, 0.5)``, the assumed share of flipped preferences.

    Inputs (``fit``'s ``x``): a dict of ``(batch, seq)`` int arrays ``chosen_token_ids``,
    ``chosen_padding_mask``, ``chosen_completion_mask`` and the same for ``rejected_``
    (:func:`~keras_transformers.training.preferences.pack_preferences`); optionally
    ``(batch,)`` ``reference_chosen_log_prob`` / ``reference_rejected_log_prob``. With a
    preprocessor on the policy, also ``{"prompt": [...], "chosen": [...], "rejected": [...]}``
    strings, tokenized as the preprocessor frames a text. No ``y``.
    """

    def __init__(self, policy, reference=None, beta=0.1, loss_type="sigmoid", label_smoothing=0.0, **kwargs):
        super().__init__(**kwargs)
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"`loss_type` must be one of {LOSS_TYPES}, got {loss_type!r}.")
        if not beta > 0.0:
            raise ValueError(f"`beta` must be > 0, got {beta}.")
        if not 0.0 <= label_smoothing < 0.5:
            raise ValueError(f"`label_smoothing` must be in [0, 0.5), got {label_smoothing}.")
        if not policy.built:
            policy.build()
        self.policy = policy
        self.reference, self.adapters_as_reference = make_reference(policy, reference)
        self.beta, self.loss_type, self.label_smoothing = float(beta), loss_type, float(label_smoothing)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in (
            "reward_accuracy", "reward_margin", "chosen_log_prob", "rejected_log_prob", "kl")}
        self.built = True

    # --- inputs ----------------------------------------------------------------------------------
    def validate_inputs(self, inputs):
        """The checked tensors of ``inputs`` (ids in the policy's vocabulary, 0/1 masks)."""
        missing = [f"{side}_{key}" for side in SIDES for key in ("token_ids", "padding_mask", "completion_mask")
                   if f"{side}_{key}" not in inputs]
        if missing:
            raise ValueError(f"DPO inputs need {', '.join(missing)} (see pack_preferences); got keys "
                             f"{sorted(inputs)}.")
        checked = dict(inputs)
        for side in SIDES:
            ids = self.policy.validate_inputs({"token_ids": inputs[f"{side}_token_ids"],
                                               "padding_mask": inputs[f"{side}_padding_mask"]})
            checked[f"{side}_token_ids"], checked[f"{side}_padding_mask"] = ids["token_ids"], ids["padding_mask"]
            checked[f"{side}_completion_mask"] = check_mask_values(
                tf.convert_to_tensor(inputs[f"{side}_completion_mask"]), f"{side}_completion_mask")
        return checked

    def _as_inputs(self, x):
        if hasattr(x, "keys") and "prompt" in x:
            if self.policy.preprocessor is None:
                raise ValueError("DPO got text (prompt/chosen/rejected) but the policy has no preprocessor; "
                                 "attach one, or pass ids packed with pack_preferences.")
            return tokenize_preferences(self.policy.preprocessor, x["prompt"], x["chosen"], x["rejected"])
        return x

    def fit(self, x=None, y=None, **kwargs):
        if isinstance(x, tf.data.Dataset):  # it arrives shuffled or not; Keras would warn
            kwargs["shuffle"] = False
        return super().fit(self._as_inputs(x), y, **kwargs)

    def evaluate(self, x=None, y=None, **kwargs):
        return super().evaluate(self._as_inputs(x), y, **kwargs)

    # --- the computation -------------------------------------------------------------------------
    def _both(self, x):
        """The chosen and rejected sequences as one batch of ``2·batch`` rows (one forward pass)."""
        return [tf.concat([x[f"chosen_{key}"], x[f"rejected_{key}"]], axis=0)
                for key in ("token_ids", "padding_mask", "completion_mask")]

    def _reference_log_probs(self, token_ids, padding_mask, completion_mask):
        gathered, log_probs = reference_token_log_probs(self.policy, self.reference, token_ids, padding_mask)
        return tf.reduce_sum(gathered * counted_tokens(padding_mask, completion_mask), axis=-1), log_probs

    def call(self, inputs, training=False):
        token_ids, padding_mask, completion_mask = self._both(inputs)
        summed, log_probs, counted = completion_log_probs(self.policy, token_ids, padding_mask, completion_mask,
                                                          training=training)
        outputs = {"log_prob": summed, "tokens": tf.reduce_sum(counted, axis=-1)}
        if all(key in inputs for key in REFERENCE_KEYS):
            outputs["reference_log_prob"] = tf.concat([tf.cast(inputs[k], tf.float32) for k in REFERENCE_KEYS], 0)
        else:
            outputs["reference_log_prob"], reference_log_probs = self._reference_log_probs(
                token_ids, padding_mask, completion_mask)
            kl = tf.reduce_sum(tf.exp(log_probs) * (log_probs - reference_log_probs), axis=-1)
            outputs["kl"] = tf.math.divide_no_nan(tf.reduce_sum(kl * counted), tf.reduce_sum(counted))
        return outputs

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        log_ratio = y_pred["log_prob"] - y_pred["reference_log_prob"]
        if self.loss_type == "ipo":  # per-token means
            log_ratio = tf.math.divide_no_nan(log_ratio, y_pred["tokens"])
        chosen_ratio, rejected_ratio = tf.split(log_ratio, 2)
        loss = tf.reduce_mean(dpo_loss(chosen_ratio - rejected_ratio, self.beta, self.loss_type,
                                       self.label_smoothing))
        chosen_reward, rejected_reward = (tf.stop_gradient(self.beta * r) for r in (chosen_ratio, rejected_ratio))
        chosen_log_prob, rejected_log_prob = tf.split(tf.stop_gradient(y_pred["log_prob"]), 2)
        self.trackers["reward_accuracy"].update_state(tf.cast(chosen_reward > rejected_reward, tf.float32))
        self.trackers["reward_margin"].update_state(chosen_reward - rejected_reward)
        self.trackers["chosen_log_prob"].update_state(chosen_log_prob)
        self.trackers["rejected_log_prob"].update_state(rejected_log_prob)
        if "kl" in y_pred:
            self.trackers["kl"].update_state(tf.stop_gradient(y_pred["kl"]))
        return loss

    # --- precomputing the reference --------------------------------------------------------------
    def with_reference_log_probs(self, x, batch_size=32):
        """``x`` (ids, or text with a preprocessor) with the reference's summed log-probabilities
        of each completion added (``reference_chosen_log_prob``, ``reference_rejected_log_prob``):
        computed once, so that training skips the reference's forward pass."""
        x = {key: np.asarray(value) for key, value in self._as_inputs(x).items()}
        count = len(x["chosen_token_ids"])
        found = {key: [] for key in REFERENCE_KEYS}
        reference = tf.function(lambda *args: self._reference_log_probs(*args)[0])
        for start in range(0, count, batch_size):
            batch = {key: value[start:start + batch_size] for key, value in x.items()}
            checked = self.validate_inputs(batch)
            summed = reference(*self._both(checked)).numpy()
            for key, part in zip(REFERENCE_KEYS, np.split(summed, 2)):
                found[key].append(part)
        return {**x, **{key: np.concatenate(parts).astype(np.float32) for key, parts in found.items()}}
