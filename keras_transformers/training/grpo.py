"""Group Relative Policy Optimization (Shao et al., 2024, DeepSeekMath, section 4.1).

Each iteration samples ``G`` completions ``o_1..o_G`` of every prompt ``q`` from the current
policy (``π_old``, through our compiled ``generate``), scores them with a reward function, and
normalizes the rewards within each group (outcome supervision: every token of ``o_i`` gets its
completion's advantage)::

    Â_i = (r_i - mean(r_1..r_G)) / (std(r_1..r_G) + δ)        (std with N - 1, as TRL)

The policy then takes ``updates`` gradient steps on the clipped surrogate with a KL penalty to
the frozen reference (the unbiased "k3" estimator of the paper, eq. 4)::

    ρ_t  = π(o_t | q, o_<t) / π_old(o_t | q, o_<t)
    KL_t = π_ref(o_t|·)/π(o_t|·) - log(π_ref(o_t|·)/π(o_t|·)) - 1
    loss = -mean_i [ 1/|o_i| Σ_t ( min(ρ_t·Â_i, clip(ρ_t, 1-ε, 1+ε)·Â_i) - β·KL_t ) ]

With one update per sample (``updates=1``) ``ρ = 1`` and the clip never acts; more updates
reuse the samples, the clip bounding how far they move the policy.

Example:
    >>> def reward(prompts, completions):            # 1 for a completion that says "good"
    ...     return [float("good" in c) for c in completions]
    >>> grpo = GRPO(policy, reward, group_size=4, max_new_tokens=12)
    >>> grpo.compile(optimizer=keras.optimizers.Adam(1e-5))
    >>> history = grpo.fit(prompts, iterations=50, prompts_per_iteration=8)
"""

import keras
import numpy as np
import tensorflow as tf

from keras_transformers.ops.checks import check_mask_values
from keras_transformers.training.objective import PolicyObjective
from keras_transformers.training.preferences import counted_tokens, token_log_probs
from keras_transformers.training.reference import make_reference, reference_token_log_probs

SEQUENCE_BUCKET = 16  # sampled batches are padded to a multiple of this: few XLA shapes


def group_advantages(rewards, group_size, delta=1e-4):
    """``Â`` of the module docstring for ``rewards`` ordered group by group (``G`` consecutive
    completions per prompt): a ``(len(rewards),)`` float32 array; a group whose rewards are all
    equal gets zeros."""
    rewards = np.asarray(rewards, np.float64).reshape(-1, group_size)
    spread = rewards.std(axis=1, ddof=1, keepdims=True) if group_size > 1 else np.zeros_like(rewards[:, :1])
    return ((rewards - rewards.mean(axis=1, keepdims=True)) / (spread + delta)).reshape(-1).astype(np.float32)


def grpo_loss(log_probs, old_log_probs, reference_log_probs, advantages, counted, epsilon=0.2, beta=0.04):
    """The loss of the module docstring (``(batch, seq - 1)`` per-token log-probabilities, ``counted``
    the completion tokens' weights, ``(batch,)`` advantages); returns ``(loss, mean KL)``."""
    ratio = tf.exp(log_probs - old_log_probs)
    advantages = advantages[:, None]
    surrogate = tf.minimum(ratio * advantages, tf.clip_by_value(ratio, 1.0 - epsilon, 1.0 + epsilon) * advantages)
    log_reference_ratio = reference_log_probs - log_probs
    kl = tf.exp(log_reference_ratio) - log_reference_ratio - 1.0
    tokens = tf.maximum(tf.reduce_sum(counted, axis=-1), 1.0)
    per_sequence = tf.reduce_sum((surrogate - beta * kl) * counted, axis=-1) / tokens
    mean_kl = tf.reduce_sum(kl * counted) / tf.maximum(tf.reduce_sum(counted), 1.0)
    return -tf.reduce_mean(per_sequence), mean_kl


class GRPOUpdate(PolicyObjective):
    """The policy update of :class:`GRPO` on a sampled batch (``fit`` on the dict that
    :meth:`GRPO.sample` returns): ``token_ids``, ``padding_mask``, ``completion_mask``
    ``(batch, seq)``; ``advantages`` ``(batch,)``; ``old_log_probs`` and
    ``reference_log_probs`` ``(batch, seq - 1)``. Logs ``loss`` and ``kl``."""

    def __init__(self, policy, epsilon=0.2, beta=0.04, **kwargs):
        super().__init__(**kwargs)
        self.policy, self.epsilon, self.beta = policy, float(epsilon), float(beta)
        self.trackers = {"kl": keras.metrics.Mean(name="kl")}
        self.built = True

    def validate_inputs(self, inputs):
        checked = dict(inputs)
        ids = self.policy.validate_inputs({"token_ids": inputs["token_ids"], "padding_mask": inputs["padding_mask"]})
        checked.update(ids)
        checked["completion_mask"] = check_mask_values(tf.convert_to_tensor(inputs["completion_mask"]),
                                                       "completion_mask")
        return checked

    def call(self, inputs, training=False):
        return token_log_probs(self.policy, inputs["token_ids"], inputs["padding_mask"], training=training)[0]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        loss, kl = grpo_loss(y_pred, tf.cast(x["old_log_probs"], tf.float32),
                             tf.cast(x["reference_log_probs"], tf.float32), tf.cast(x["advantages"], tf.float32),
                             counted_tokens(x["padding_mask"], x["completion_mask"]), self.epsilon, self.beta)
        self.trackers["kl"].update_state(kl)
        return loss


class GRPO:
    """GRPO for a ``CausalLM`` ``policy`` (see the module docstring).

    Args:
        policy: a built ``CausalLM``, trained in place.
        reward: ``reward(prompts, completions) -> (n,)`` floats, with strings when the prompts
            are strings (the policy's preprocessor decodes the completions), else id lists; or a
            Keras classifier taking text, whose probability of class ``reward_class`` is the reward.
        reference: the frozen reference; default: a copy of the policy, or the policy with its
            adapters off when it has LoRA adapters.
        group_size: ``G``, completions sampled per prompt.
        max_new_tokens, temperature, top_k, top_p: the sampling (``generate``'s settings).
        epsilon: the clip ``ε``. beta: ``β``, the KL penalty's weight.
    """

    def __init__(self, policy, reward, reference=None, group_size=4, max_new_tokens=16, temperature=1.0,
                 top_k=None, top_p=None, epsilon=0.2, beta=0.04, reward_class=-1):
        if group_size < 2:
            raise ValueError(f"`group_size` must be at least 2 (advantages are relative to the group), "
                             f"got {group_size}.")
        if not temperature > 0:
            raise ValueError(f"`temperature` must be > 0 (GRPO samples), got {temperature}.")
        if not policy.built:
            policy.build()
        self.policy, self.reward, self.reward_class = policy, reward, reward_class
        self.reference, _ = make_reference(policy, reference)
        self.group_size, self.max_new_tokens = int(group_size), int(max_new_tokens)
        self.sampling = {"temperature": float(temperature), "top_k": top_k, "top_p": top_p}
        self.update = GRPOUpdate(policy, epsilon=epsilon, beta=beta)
        self._log_probs = tf.function(self._both_log_probs)

    def compile(self, optimizer="adam", **kwargs):
        """Compile the policy update (:class:`GRPOUpdate`; XLA on by default)."""
        self.update.compile(optimizer=optimizer, **kwargs)

    def _both_log_probs(self, token_ids, padding_mask):
        old = tf.stop_gradient(token_log_probs(self.policy, token_ids, padding_mask)[0])
        return old, reference_token_log_probs(self.policy, self.reference, token_ids, padding_mask)[0]

    def _rewards(self, prompts, completion_ids, text):
        if not text:
            return np.asarray(self.reward(prompts, completion_ids), np.float32)
        completions = self.policy.preprocessor.detokenize(completion_ids)
        if isinstance(self.reward, keras.Model):
            logits = self.reward.predict(list(completions), verbose=0)
            return tf.nn.softmax(logits, axis=-1).numpy()[:, self.reward_class].astype(np.float32)
        return np.asarray(self.reward(prompts, completions), np.float32)

    def sample(self, prompts, seed=None):
        """``G`` completions of each prompt (strings with the policy's preprocessor, or id
        lists), with their rewards, advantages and the old and reference log-probabilities:
        the dict :class:`GRPOUpdate` trains on, plus ``rewards`` and ``completions`` (ids)."""
        text = bool(prompts) and isinstance(prompts[0], (str, bytes))
        prompt_ids = self.policy.preprocessor.prompt_ids(prompts) if text else [list(p) for p in prompts]
        repeated = [ids for ids in prompt_ids for _ in range(self.group_size)]
        end_id = getattr(self.policy.preprocessor, "end_id", None)
        out = self.policy.generate(repeated, self.max_new_tokens, seed=seed,
                                   stop_token_ids=[end_id] if end_id is not None else None, **self.sampling)
        token_ids, padding_mask = out["token_ids"], out["padding_mask"].astype(np.int32)
        lengths = np.array([len(p) for p in repeated])
        completion_mask = padding_mask * (np.arange(token_ids.shape[1])[None, :] >= lengths[:, None])
        width = min(-(-token_ids.shape[1] // SEQUENCE_BUCKET) * SEQUENCE_BUCKET, self.policy.config.max_length)
        pad = [(0, 0), (0, width - token_ids.shape[1])]
        token_ids = np.pad(token_ids, pad, constant_values=self.policy.config.pad_token_id)
        padding_mask, completion_mask = np.pad(padding_mask, pad), np.pad(completion_mask, pad)
        completions = [row[mask.astype(bool)].tolist() for row, mask in zip(token_ids, completion_mask)]
        if end_id is not None:
            completions = [c[:-1] if c and c[-1] == end_id else c for c in completions]
        rewards = self._rewards([p for p in prompts for _ in range(self.group_size)], completions, text)
        old, reference = self._log_probs(tf.constant(token_ids), tf.constant(padding_mask))
        return {"token_ids": token_ids, "padding_mask": padding_mask, "completion_mask": completion_mask,
                "advantages": group_advantages(rewards, self.group_size), "old_log_probs": old.numpy(),
                "reference_log_probs": reference.numpy(), "rewards": rewards, "completions": completions}

    def fit(self, prompts, iterations, prompts_per_iteration=8, updates=1, batch_size=None, seed=0, verbose=1):
        """Run ``iterations`` of sample-then-update over ``prompts`` (taken in order, cycling);
        returns one dict per iteration: ``reward`` (the samples' mean), ``loss`` and ``kl``."""
        history = []
        progress = keras.utils.Progbar(iterations, verbose=verbose, stateful_metrics=("reward", "loss", "kl"))
        for iteration in range(iterations):
            start = (iteration * prompts_per_iteration) % len(prompts)
            batch_prompts = [prompts[(start + i) % len(prompts)] for i in range(prompts_per_iteration)]
            sampled = self.sample(batch_prompts, seed=seed + iteration)
            inputs = {k: v for k, v in sampled.items() if k not in ("rewards", "completions")}
            logs = self.update.fit(inputs, batch_size=batch_size or len(inputs["token_ids"]), epochs=updates,
                                   shuffle=False, verbose=0).history
            row = {"reward": float(np.mean(sampled["rewards"])), "loss": logs["loss"][-1], "kl": logs["kl"][-1]}
            history.append(row)
            progress.update(iteration + 1, list(row.items()))
        return history
