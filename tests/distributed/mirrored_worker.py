"""Run in a fresh process by test_mirrored.py (logical devices must be set before TensorFlow
starts): every task model trains, evaluates and predicts under MirroredStrategy on 2 logical
CPU devices and on one device, from the same seed and batches; prints one JSON line of the
largest differences of losses, weights, evaluation and predictions per model."""

import json
import os
import sys
import tempfile
import warnings

import tensorflow as tf

cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_transformers as kt  # noqa: E402
from keras_transformers.preprocessing import TextPreprocessor  # noqa: E402
from keras_transformers.tokenizers import byte_tokenizer  # noqa: E402

BATCH, SEQ, VOCAB = 8, 8, 64
rng = np.random.default_rng(0)
ids = rng.integers(1, VOCAB, (2 * BATCH, SEQ + 1)).astype("int32")
mask = np.ones((2 * BATCH, SEQ), "int32")
mask[:BATCH // 2, 2:] = 0  # the first replica's half of the first batch: 2 real tokens a row
mask[BATCH:BATCH + 2, 5:] = 0
inputs = {"token_ids": ids[:, :-1] * mask, "padding_mask": mask}
CONFIG = dict(vocab_size=VOCAB, num_layers=1, dropout=0.0, attention_dropout=0.0)


def seq2seq_inputs():
    return {"encoder_token_ids": inputs["token_ids"], "encoder_padding_mask": mask,
            "decoder_token_ids": ids[:, :-1] * mask, "decoder_padding_mask": mask}


TASKS = {
    "EncoderClassifier": (lambda: kt.EncoderClassifier(kt.TransformerConfig.from_preset("tiny", **CONFIG),
                                                       num_classes=3, dropout=0.0),
                          lambda: (inputs, ids[:, 0] % 3)),
    "EncoderTokenClassifier": (lambda: kt.EncoderTokenClassifier(
        kt.TransformerConfig.from_preset("tiny", **CONFIG), num_classes=5, dropout=0.0),
                               lambda: (inputs, ids[:, 1:] % 5)),
    "MaskedLM": (lambda: kt.MaskedLM(kt.TransformerConfig.from_preset("tiny", **CONFIG)),
                 lambda: (inputs, np.where(ids[:, 1:] % 3 == 0, ids[:, 1:], -100))),
    "CausalLM": (lambda: kt.CausalLM(kt.TransformerConfig.from_preset("tiny", norm_first=True, **CONFIG)),
                 lambda: (inputs, ids[:, 1:])),
    "Seq2Seq": (lambda: kt.Seq2Seq(kt.TransformerConfig.from_preset("tiny", num_decoder_layers=1, **CONFIG)),
                lambda: (seq2seq_inputs(), ids[:, 1:])),
    "EncoderClassifier+text": (lambda: kt.EncoderClassifier(
        kt.TransformerConfig.from_preset("tiny", **{**CONFIG, "vocab_size": 256}), num_classes=2, dropout=0.0,
        preprocessor=TextPreprocessor(byte_tokenizer(), SEQ, start_id=1, separator_id=2)),
                               lambda: (np.array(["a fine film", "dull", "the best", "no", "bad", "good film",
                                                  "ok", "a very long and winding text"] * 2), np.arange(16) % 2)),
}


FULL = ("CausalLM", "EncoderClassifier+text")  # also evaluated and predicted (each costs traces)


def train(name, strategy):
    make_model, make_data = TASKS[name]
    x, y = make_data()
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = make_model()
        # jit_compile on: falls back under 2 replicas. The decoder's gradients are clipped (the
        # clip must act on the global gradient, not on each replica's part of it).
        optimizer = keras.optimizers.SGD(0.5, global_clipnorm=0.5 if name == "CausalLM" else None)
        model.compile(optimizer=optimizer)
    batch_size = BATCH
    if isinstance(x, dict):  # arrays as a dataset of global batches; strings: the model's own pipeline
        x, y, batch_size = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH), None, None
    losses = model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0).history["loss"]
    if name not in FULL:
        return model, losses, [], []
    evaluation = model.evaluate(x, y, batch_size=batch_size, verbose=0)
    return model, losses, evaluation, model.predict(x, batch_size=batch_size, verbose=0)


def largest_difference(a, b):
    return max([0.0] + [float(np.abs(np.asarray(p, np.float64) - np.asarray(q, np.float64)).max()) for p, q in zip(a, b)])


# One strategy object for every model: new MirroredStrategy objects in one process restart
# their collective instance keys, and collectives of different models then collide.
ONE_DEVICE = tf.distribute.OneDeviceStrategy("CPU:0")
TWO_REPLICAS = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
results = {}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for name in (sys.argv[1:] or TASKS):
        one_model, one_losses, one_eval, one_pred = train(name, ONE_DEVICE)
        two_model, two_losses, two_eval, two_pred = train(name, TWO_REPLICAS)
        results[name] = {
            "losses": [one_losses, two_losses],
            "loss": largest_difference(one_losses, two_losses),
            "weights": largest_difference([w.numpy() for w in one_model.weights],
                                          [w.numpy() for w in two_model.weights]),
            "evaluate": largest_difference(np.atleast_1d(one_eval), np.atleast_1d(two_eval)),
            "predict": largest_difference([one_pred], [two_pred]) if name in FULL else 0.0,
        }
        if name == "CausalLM":  # trained under the strategy: saves, loads on one device, generates
            path = os.path.join(tempfile.mkdtemp(), "lm.keras")
            two_model.save(path)
            loaded = keras.saving.load_model(path)
            prompts = [[5, 6, 7], [8]]
            results["generate_equal"] = (
                loaded.generate(prompts, max_new_tokens=4)["token_ids"].tolist()
                == one_model.generate(prompts, max_new_tokens=4)["token_ids"].tolist())
            # ... and exports: the strategy-trained model itself (mirrored variables) to a
            # SavedModel, the loaded one to ONNX; both answer as the one-device model does.
            import onnxruntime

            from keras_transformers.export import export_onnx, export_savedmodel

            expected = one_model.predict(inputs, batch_size=BATCH, verbose=0)
            version = export_savedmodel(two_model, os.path.join(tempfile.mkdtemp(), "served"), verify=False)
            served = tf.saved_model.load(version).signatures["predict_ids"](
                token_ids=tf.constant(inputs["token_ids"]), padding_mask=tf.constant(mask))["logits"]
            onnx_dir = export_onnx(loaded, os.path.join(tempfile.mkdtemp(), "onnx"), verify=False)
            session = onnxruntime.InferenceSession(os.path.join(onnx_dir, "model.onnx"))
            feeds = {i.name: {"token_ids": inputs["token_ids"], "padding_mask": mask}[i.name]
                     for i in session.get_inputs()}
            results["export"] = {"savedmodel": largest_difference([expected], [served.numpy()]),
                                 "onnx": largest_difference([expected], [session.run(None, feeds)[0]])}
results["fallback_warnings"] = sorted({str(w.message).split(":")[0] for w in caught
                                       if "falls back to a TensorFlow graph" in str(w.message)})
print(json.dumps(results))
sys.stdout.flush()
