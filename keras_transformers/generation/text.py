"""The text side of ``generate_text``: what counts as a batch of prompts, and how a prompt that
leaves no room for the new tokens is cut (the same way the serving signature cuts it)."""

import numpy as np

from keras_transformers.generation.generate import too_long_message


def text_batch(texts, name="prompts"):
    """``texts`` as a list of ``str`` and whether it was one bare string.

    A bare ``str`` (or ``bytes``) is one prompt, not a sequence of one-character prompts.
    ``bytes`` are decoded as UTF-8, so a list may mix ``str`` and ``bytes``; anything else
    is a ``TypeError`` and undecodable bytes a ``ValueError``, naming the argument and row.
    """
    given = texts
    single = isinstance(texts, (str, bytes, np.str_, np.bytes_))
    if single:
        texts = [texts]
    elif isinstance(texts, np.ndarray):
        texts = texts.reshape(-1).tolist() if texts.ndim == 1 else None
    elif isinstance(texts, (list, tuple)):
        texts = list(texts)
    else:
        try:  # a tf.Tensor of strings, or another iterable of them
            texts = list(texts.numpy()) if hasattr(texts, "numpy") else list(texts)
        except TypeError:
            texts = None
    if texts is None:
        raise TypeError(f"`{name}` must be a string or a list of strings, got {type(given).__name__}.")
    decoded = []
    for row, text in enumerate(texts):
        if isinstance(text, (bytes, np.bytes_)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"`{name}` row {row} is bytes that are not UTF-8 ({error.reason} at "
                                 f"byte {error.start}): {bytes(text)[:40]!r}.") from None
        elif not isinstance(text, str):
            raise TypeError(f"`{name}` row {row} must be a string (str, or UTF-8 bytes), got "
                            f"{type(text).__name__} {text!r}.")
        decoded.append(str(text))
    return decoded, single


def keep_last_tokens(prompt_ids, max_new_tokens, max_length):
    """Each prompt cut to its last ``max_length - max_new_tokens`` tokens, so that it and the
    new tokens fit the model: what the exported ``serving_default`` does to a long prompt."""
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
        return [list(ids) for ids in prompt_ids]  # generate names the bad argument
    room = max_length - int(max_new_tokens)
    if room < 1:
        raise ValueError(too_long_message(1, max_new_tokens, max_length))
    return [list(ids)[-room:] for ids in prompt_ids]
