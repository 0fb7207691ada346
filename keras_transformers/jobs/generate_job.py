"""The generate job: :func:`generate` continues prompts or translates sources, from a model or an
exported SavedModel."""

import os

import tensorflow as tf

from keras_transformers import tokenizers as tokenizer_lib
from keras_transformers.jobs.common import DEFAULT_MAX_NEW_TOKENS, MODEL_FILE, JobError
from keras_transformers.jobs.models import _savedmodel_dir, load_model, task_of


def stop_token_ids(model):
    """Where generation stops: the preprocessor's end id; nowhere with ``end_id=None`` (the
    quickstart's text has no end-of-text token), or when that id is a plain character of a
    :class:`~keras_transformers.tokenizers.CharacterTokenizer` without special tokens."""
    tokenizer = model.preprocessor.tokenizer
    if model.preprocessor.end_id is None:  # a text without an end-of-text token
        return []
    if isinstance(tokenizer, tokenizer_lib.CharacterTokenizer) and model.preprocessor.end_id not in (
            tokenizer.special_token_ids):
        return []
    return [int(model.preprocessor.end_id)]


def _generate_savedmodel(directory, prompts, settings):
    given = sorted(key for key, value in settings.items() if value is not None)
    if given:
        raise JobError(f"{directory} is a SavedModel: its generation settings were fixed at export; "
                       f"export again with {', '.join('--' + k.replace('_', '-') for k in given)} to change them")
    loaded = tf.saved_model.load(directory)
    signature = loaded.signatures.get("serving_default")
    if signature is None or "text" not in signature.structured_input_signature[1]:
        raise JobError(f"{directory} has no text-in serving_default signature (export a model with its "
                       "preprocessor attached)")
    outputs = signature(text=tf.constant(list(prompts)))
    if "generated_text" not in outputs:
        raise JobError(f"{directory} does not generate text (its serving_default gives {sorted(outputs)})")
    return [text.decode("utf-8") for text in outputs["generated_text"].numpy()]


def generate(model, prompts, *, max_new_tokens=None, temperature=None, top_k=None, top_p=None, num_beams=None,
             seed=None):
    """Continue each prompt (causal LM) or translate each source (seq2seq); returns strings.

    ``model``: a loaded model, a ``.keras`` path, a run directory, or a SavedModel version
    directory (then through its text signature, whose settings were fixed at export). A causal
    LM asked for more tokens than its context (``max_length``) holds slides its window
    (:func:`~keras_transformers.generation.generate_uncached`: sampling or greedy, no beams).
    """
    prompts = [str(prompt) for prompt in prompts]
    if not prompts:
        raise JobError("give at least one prompt")
    settings = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_k": top_k, "top_p": top_p,
                "num_beams": num_beams, "seed": seed}
    if isinstance(model, (str, os.PathLike)):
        directory = _savedmodel_dir(model)
        if directory is not None and not os.path.exists(os.path.join(model, MODEL_FILE)):
            return _generate_savedmodel(directory, prompts, settings)
        model = load_model(model)
    task = task_of(model)
    if task not in ("causal-lm", "seq2seq"):
        raise JobError(f"generate needs a causal-lm or seq2seq model, got a {task} ({type(model).__name__})")
    if model.preprocessor is None:
        raise JobError("the model has no preprocessor attached: it takes ids, not text")
    limit = model.config.max_length
    if max_new_tokens is None:  # a seq2seq decoder cannot slide: its default fits its context
        max_new_tokens = DEFAULT_MAX_NEW_TOKENS if task == "causal-lm" else min(DEFAULT_MAX_NEW_TOKENS, limit - 1)
    temperature = 0.0 if temperature is None else float(temperature)
    num_beams = num_beams or 1
    seed = 0 if seed is None else seed
    stop = stop_token_ids(model)
    options = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed}
    if task == "seq2seq":
        if max_new_tokens >= limit:
            raise JobError(f"--max-new-tokens {max_new_tokens} does not fit the model's max_length={limit} "
                           f"(the decoder's context); ask for at most {limit - 1}")
        return model.generate_text(prompts, max_new_tokens, num_beams=num_beams, stop_token_ids=stop or None,
                                   **options)
    preprocessor = model.preprocessor
    prompt_ids = preprocessor.prompt_ids(prompts)
    longest = max(len(ids) for ids in prompt_ids)
    if longest + max_new_tokens <= limit:
        outputs = model.generate(prompt_ids, max_new_tokens, num_beams=num_beams,
                                 stop_token_ids=stop or None, **options)
        continuations = []
        for row, mask, ids in zip(outputs["token_ids"], outputs["padding_mask"], prompt_ids):
            new = row[mask][len(ids):].tolist()
            continuations.append(new[:-1] if new and new[-1] in stop else new)
        return preprocessor.detokenize(continuations)
    if num_beams > 1:
        raise JobError(f"the prompt ({longest} tokens) and --max-new-tokens {max_new_tokens} exceed the model's "
                       f"context of {limit} tokens: ask for at most {max(limit - longest, 0)} new tokens, or "
                       f"drop --num-beams to slide the window (uncached generation)")
    from keras_transformers.generation import generate_uncached

    texts = []
    for ids in prompt_ids:  # one prompt at a time: the sliding window takes prompts of one length
        sequence = generate_uncached(model, [ids], max_new_tokens, temperature=temperature, top_k=top_k,
                                     top_p=top_p, seed=seed)[0, len(ids):].tolist()
        if stop and any(token in stop for token in sequence):
            sequence = sequence[:min(sequence.index(token) for token in stop if token in sequence)]
        texts += preprocessor.detokenize([sequence])
    return texts
