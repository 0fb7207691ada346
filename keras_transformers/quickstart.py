"""The quickstart: a small character-level GPT trained on tiny Shakespeare, then sampled.

nanoGPT's CPU configuration (4 layers, 4 heads, width 128, context 64, batch 12, lr 1e-3
with cosine decay) trained with plain ``model.compile`` / ``model.fit``.

The model carries its character tokenizer (:func:`text_preprocessor`): saved with ``--save
model.keras``, it is text in, text out: ``keras-transformers generate model.keras "ROMEO:"``
continues a prompt, and ``keras-transformers export savedmodel model.keras serving/char_gpt``
gives a SavedModel whose ``serving_default`` takes ``text``.
"""

import time

import keras
import numpy as np
import tensorflow as tf

from keras_transformers.data import tiny_shakespeare
from keras_transformers.generation import generate_uncached
from keras_transformers.jobs import StopOnInterrupt  # noqa: F401  (its home was here)
from keras_transformers.models import CausalLM, TransformerConfig
from keras_transformers.preprocessing import CausalLMPreprocessor
from keras_transformers.tokenizers import CharacterTokenizer


class CharacterVocabulary:
    """Characters ↔ ids, the sorted distinct characters of a text (65 for tiny Shakespeare)."""

    def __init__(self, text):
        self.characters = sorted(set(text))
        self.index = {character: i for i, character in enumerate(self.characters)}

    def __len__(self):
        return len(self.characters)

    def encode(self, text):
        return np.array([self.index[character] for character in text], np.int32)

    def decode(self, ids):
        return "".join(self.characters[i] for i in ids)


def language_model_windows(ids, context, batch_size, seed):
    """An endless dataset of random ``context``-long windows: inputs and next-token labels.

    Endless (and read with ``steps_per_epoch``) because ``fit`` over a finite dataset can
    idle for seconds at its end, waiting on tf.data's autotuning thread.
    """
    ids = tf.constant(ids)
    limit = len(ids) - context - 1

    def windows(random_values):  # one gather per batch, not one map call per window
        starts = tf.cast(random_values % limit, tf.int32)
        chunks = tf.gather(ids, starts[:, None] + tf.range(context + 1))
        inputs = {"token_ids": chunks[:, :-1], "padding_mask": tf.ones([batch_size, context], tf.int32)}
        return inputs, chunks[:, 1:]

    return (tf.data.Dataset.random(seed=seed).batch(batch_size, drop_remainder=True)
            .map(windows).prefetch(2))


def text_preprocessor(vocabulary, context=64):
    """The quickstart model's text side: a :class:`CharacterTokenizer` over the same ids as
    ``vocabulary`` (the 65 characters, no special tokens, so training is unchanged) and a
    :class:`CausalLMPreprocessor` that starts every prompt with a newline, as the training text
    runs. The text has no end-of-text token (``end_id=None``): ``generate_text``, the CLI's
    ``generate`` and the exported text signature run their ``max_new_tokens``."""
    newline = vocabulary.index["\n"]
    tokenizer = CharacterTokenizer(vocabulary.characters, special_tokens=())
    return CausalLMPreprocessor(tokenizer, context, start_id=newline, end_id=None, pad_id=newline)


def quickstart_config(vocab_size, context=64):
    """nanoGPT's CPU shape in GPT-2's architecture."""
    return TransformerConfig.from_preset(
        "gpt2_small", vocab_size=vocab_size, hidden_size=128, num_layers=4, num_heads=4,
        intermediate_size=512, max_length=context, dropout=0.0, attention_dropout=0.0)


def run(steps=2000, steps_per_epoch=250, batch_size=12, context=64, learning_rate=1e-3,
        sample_length=500, temperature=0.8, save_path=None, seed=0, jit_compile=True):
    """Train, report the validation loss, print a sample. Returns the final validation loss.

    Ctrl-C during training stops it and goes on with the model as trained so far: it is still
    evaluated, saved (with ``save_path``) and sampled. Returns ``None`` when Ctrl-C came before
    the first step finished.
    """
    keras.utils.set_random_seed(seed)
    text = tiny_shakespeare()
    vocabulary = CharacterVocabulary(text)
    ids = vocabulary.encode(text)
    split = int(len(ids) * 0.9)  # nanoGPT's split
    train = language_model_windows(ids[:split], context, batch_size, seed)
    validation = language_model_windows(ids[split:], context, batch_size, seed + 1)

    model = CausalLM(quickstart_config(len(vocabulary), context),
                     preprocessor=text_preprocessor(vocabulary, context))
    warmup = min(100, steps // 10)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=steps - warmup, warmup_target=learning_rate, warmup_steps=warmup,
        alpha=0.1)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.1, beta_2=0.99,
                                                   clipnorm=1.0),
                  jit_compile=jit_compile)
    epochs = max(1, -(-steps // steps_per_epoch))
    model.build(None)
    print(f"Training a {model.count_params():,}-parameter character-level GPT "
          f"(4 layers, width 128, context {context}) on tiny Shakespeare: {epochs} epochs "
          f"of {steps_per_epoch} steps, batch {batch_size}.")
    started = time.perf_counter()
    stop = StopOnInterrupt()
    try:
        with stop.catching_ctrl_c():
            model.fit(train, epochs=epochs, steps_per_epoch=steps_per_epoch, validation_data=validation,
                      validation_steps=20, shuffle=False, verbose=1, callbacks=[stop])
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once
        pass
    if stop.interrupted:  # Ctrl-C: keep what was learned; evaluate, save and sample it
        if int(model.optimizer.iterations) == 0:  # stopped while the first step was compiling
            print("\nInterrupted before the first training step finished: nothing to keep.")
            return None
        print(f"\nInterrupted after {int(model.optimizer.iterations)} steps: "
              f"keeping the model as trained so far.")
    minutes = (time.perf_counter() - started) / 60
    validation_loss = model.evaluate(validation, steps=20, verbose=0, return_dict=True)["loss"]
    print(f"\nTrained in {minutes:.1f} min ({int(model.optimizer.iterations)} steps): validation loss "
          f"{validation_loss:.3f} (nanoGPT's CPU run of this shape, 2000 steps: 1.88).")
    if save_path:
        model.save(save_path)
        print(f"Saved the model to {save_path}.")

    prompt = vocabulary.encode("\n")[None, :]
    sample = generate_uncached(model, prompt, max_new_tokens=sample_length, temperature=temperature, seed=seed)
    print("\n--- sample ---" + vocabulary.decode(sample[0]) + "\n--------------")
    return validation_loss
