"""Multi30k de→en translation from scratch: a 3+3-layer transformer, BLEU on test2016.

Anchor: bentrevett/pytorch-seq2seq "Attention is All You Need" (hidden 256, 3+3 layers, 8 heads,
FFN 512, dropout 0.1, learned positions, Adam 5e-4, batch 128, clip 1, 10 epochs): BLEU 36.52,
torchtext ``bleu_score`` over lower-cased spaCy tokens, greedy decoding.

Here: the same shape and training under :class:`~keras_transformers.Seq2Seq` (post-norm, ReLU,
embeddings scaled by √256 as there), with one lower-cased WordPiece vocabulary learned on the
German and English training sentences (our Seq2Seq shares one embedding between the two sides),
and a :class:`~keras_transformers.preprocessing.Seq2SeqPreprocessor`. Decoded with beam search
(4 beams) and greedily (``Seq2Seq.generate_text``). Scores:

- ``bleu_token``: token-level corpus BLEU as torchtext's ``bleu_score`` computes it (up to
  4-grams, brevity penalty, no smoothing), on lower-cased word/punctuation tokens (the regex
  ``\\w+|[^\\w\\s]`` applied to hypothesis and reference alike, in place of spaCy), through
  sacreBLEU with ``tokenize="none"``;
- ``sacrebleu``: sacreBLEU's default 13a tokenization on the detokenized output against the raw
  references, lower-cased (the model writes lower case), with its signature.

    python benchmarks/anchors/multi30k.py ../shared/data/multi30k
"""

import gzip
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runner  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_transformers.metrics import corpus_bleu  # noqa: E402
from keras_transformers.models import Seq2Seq, TransformerConfig  # noqa: E402
from keras_transformers.preprocessing import Seq2SeqPreprocessor  # noqa: E402
from keras_transformers.tokenizers import train_wordpiece, wordpiece_tokenizer  # noqa: E402

TASK = "multi30k"
ANCHOR = {"value": 36.52, "metric": "test2016 BLEU, token-level, lower-cased (torchtext bleu_score)",
          "source": "bentrevett/pytorch-seq2seq legacy/6 - Attention is All You Need.ipynb (greedy)"}
LENGTH = 48
TOKEN = re.compile(r"\w+|[^\w\s]")


def options(parser):
    parser.add_argument("--vocabulary-size", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--beams", type=int, default=4)


def read(data_dir, split, language):
    with gzip.open(os.path.join(data_dir, f"{split}.{language}.gz"), "rt", encoding="utf-8") as file:
        return [line.rstrip("\n") for line in file]


def tokens(text):
    return " ".join(TOKEN.findall(text.lower()))


def detokenize(text):
    text = re.sub(r" ([.,!?;:)])", r"\1", text)
    text = re.sub(r"([(]) ", r"\1", text)
    return re.sub(r" ' ", "'", text)


def translate(model, sources, beams, max_new_tokens, batch_size=100):
    outputs = []
    for start in range(0, len(sources), batch_size):
        outputs += model.generate_text(sources[start:start + batch_size], max_new_tokens,
                                       num_beams=beams)
    return outputs


def scores(hypotheses, references):
    token_level = corpus_bleu([tokens(h) for h in hypotheses], [tokens(r) for r in references],
                              tokenize="none")
    standard = corpus_bleu([detokenize(h) for h in hypotheses], references, lowercase=True)
    return {"bleu_token": token_level["bleu"], "bleu_token_signature": token_level["signature"],
            "sacrebleu": standard["bleu"], "sacrebleu_signature": standard["signature"]}


def main(argv=None):
    started = time.perf_counter()
    args = runner.arguments(TASK, __doc__.split("\n")[0], "multi30k", argv, options)
    data = {split: (read(args.data_dir, split, "de"), read(args.data_dir, split, "en"))
            for split in ("train", "val", "test_2016_flickr")}
    epochs = args.epochs or 10
    config = TransformerConfig(
        vocab_size=args.vocabulary_size, hidden_size=256, num_layers=3, num_decoder_layers=3,
        num_heads=8, intermediate_size=512, activation="relu", norm_first=False, norm_epsilon=1e-5,
        position_encoding="learned", max_length=64, embedding_norm=False, scale_embeddings=True,
        dropout=0.1, attention_dropout=0.1)
    max_new_tokens, test_count = LENGTH, None
    if args.smoke:
        args.batch_size = min(args.batch_size, 16)
        data = {split: (de[:300], en[:300]) for split, (de, en) in data.items()}
        epochs = args.epochs or 2
        config = config.replace(hidden_size=32, num_layers=1, num_decoder_layers=1, num_heads=2,
                                intermediate_size=64, vocab_size=min(args.vocabulary_size, 1000))
        max_new_tokens, test_count = 8, 16
    test_de, test_en = data["test_2016_flickr"]
    test_de, test_en = test_de[:test_count], test_en[:test_count]

    texts = tf.data.Dataset.from_tensor_slices(data["train"][0] + data["train"][1]).batch(1000)
    vocabulary = train_wordpiece(texts, config.vocab_size, lowercase=True)
    config = config.replace(vocab_size=len(vocabulary))
    start_id, end_id = vocabulary.index("[CLS]"), vocabulary.index("[SEP]")
    preprocessor = Seq2SeqPreprocessor(wordpiece_tokenizer(vocabulary), LENGTH, LENGTH, start_id, end_id)

    # Smoke: one padded shape, so the train step compiles once.
    trim_multiple = LENGTH if args.smoke else 8

    def preprocess(de, en):  # pack to LENGTH, then cut each side's common padding in the batch
        inputs, labels = preprocessor((de, en))
        encoder = runner.trim_padding({key: inputs[key] for key in ("encoder_token_ids", "encoder_padding_mask")},
                                      inputs["encoder_padding_mask"], multiple=trim_multiple)
        decoder, labels = runner.trim_padding(
            ({key: inputs[key] for key in ("decoder_token_ids", "decoder_padding_mask")}, labels),
            inputs["decoder_padding_mask"], multiple=trim_multiple)
        return {**encoder, **decoder}, labels

    def dataset(split, batch_size, shuffle):
        pairs = tf.data.Dataset.from_tensor_slices(data[split])
        if shuffle:  # batches of pairs of similar length (bucketed by English word count)
            pairs = pairs.shuffle(len(data[split][0]), seed=args.seed).group_by_window(
                lambda de, en: tf.cast(tf.minimum(tf.size(tf.strings.split(en)) // 5, 5), tf.int64),
                lambda key, rows: rows.batch(batch_size, drop_remainder=True), window_size=batch_size)
        else:
            pairs = pairs.batch(batch_size)
        return pairs.map(preprocess).prefetch(tf.data.AUTOTUNE)

    train = dataset("train", args.batch_size, True).repeat()
    validation = dataset("val", 256, False)
    steps_per_epoch = len(data["train"][0]) // args.batch_size
    optimizer = keras.optimizers.Adam(args.learning_rate, global_clipnorm=1.0)
    model = Seq2Seq(config, preprocessor=preprocessor)
    model.compile(optimizer=optimizer)
    model.build(None)
    runner.log(TASK, f"{model.count_params():,} parameters, vocabulary {len(vocabulary):,}; "
                     f"{epochs} epochs x {steps_per_epoch} steps")
    rows, training_wall = runner.fit(model, train, epochs=epochs, steps_per_epoch=steps_per_epoch,
                                     work_dir=args.work_dir, validation_data=validation)
    test_loss = float(model.evaluate(dataset("test_2016_flickr", 256, False), verbose=0,
                                     return_dict=True)["loss"])

    decoding_started = time.perf_counter()
    results, samples = {}, {}
    for name, beams in (("beam", args.beams), ("greedy", 1)):
        hypotheses = translate(model, test_de, beams, max_new_tokens)
        results[name] = scores(hypotheses, test_en)
        samples[name] = hypotheses[:5]
        runner.log(TASK, f"{name}: {results[name]}")
    decoding_wall = time.perf_counter() - decoding_started

    runner.plot_curves(rows, runner.output_path(args, "_curves.png"),
                       "Multi30k de→en (token loss / accuracy; validation = val)")
    source, hypothesis = test_de[0], samples["beam"][0]
    inputs, _ = tf.function(preprocessor)((tf.constant([source]), tf.constant([hypothesis])))
    source_length = int(np.sum(inputs["encoder_padding_mask"]))
    target_length = int(np.sum(inputs["decoder_padding_mask"]))
    weights = runner.cross_attention_weights(model, inputs)[0][:, :target_length, :source_length]
    source_pieces = [vocabulary[i] for i in inputs["encoder_token_ids"][0, :source_length].numpy()]
    target_pieces = [vocabulary[i] for i in inputs["decoder_token_ids"][0, :target_length].numpy()]
    runner.plot_attention(weights, target_pieces, source_pieces, runner.output_path(args, "_attention.png"),
                          "cross-attention, last decoder block: test sentence 1 (rows: output, "
                          "cols: German source)")

    return runner.write_result(
        args, metric="test2016_bleu_token_beam", value=results["beam"]["bleu_token"], anchor=ANCHOR,
        target={"op": ">=", "value": 36.5},
        config={**config.to_dict(), "tokenizer": f"lower-cased WordPiece learned on train de+en "
                                                 f"({len(vocabulary)})",
                "sequence_length": LENGTH, "batch_size": args.batch_size, "epochs": epochs,
                "optimizer": f"Adam(lr {args.learning_rate}), global clip 1.0",
                "beams": args.beams, "parameters": model.count_params()},
        steps=int(model.optimizer.iterations), training_wall_s=training_wall,
        total_wall_s=time.perf_counter() - started,
        extra={"test2016": results, "test_loss": test_loss, "test_perplexity": float(np.exp(test_loss)),
               "greedy_bleu_token": results["greedy"]["bleu_token"], "decoding_wall_s": decoding_wall,
               "samples": {"source": test_de[:5], "reference": test_en[:5], **samples},
               "epochs": rows})


if __name__ == "__main__":
    main()
