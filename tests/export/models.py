"""The four tiny task models the export tests ship: a text classifier (with segment ids), a
token tagger, a CausalLM (Llama-like: RoPE, grouped-query attention, untied head) and a
Seq2Seq (untied head), each with its preprocessor attached, so each has a text-in signature."""

import keras

from keras_transformers import CausalLM, EncoderClassifier, EncoderTokenClassifier, Seq2Seq
from keras_transformers.preprocessing import (
    CausalLMPreprocessor,
    Seq2SeqPreprocessor,
    TaggingPreprocessor,
    TextPreprocessor,
)
from keras_transformers.tokenizers import character_tokenizer, wordpiece_tokenizer
from tests.models.helpers import tiny_config

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "film", "was", "great", "a", "sad", "plot",
              "peter", "bl", "##ack", "##burn", "eu", "reject", "##s", "german", "call"]
TAGS = ["B-ORG", "B-PER", "I-PER", "B-MISC", "O"]
KINDS = ("classifier", "tagger", "causal_lm", "seq2seq")


def build(kind):
    keras.utils.set_random_seed(0)
    if kind == "classifier":
        preprocessor = TextPreprocessor(wordpiece_tokenizer(VOCABULARY), sequence_length=12, start_id=2,
                                        separator_id=3, segment_ids=True)
        return EncoderClassifier(tiny_config("segments", vocab_size=len(VOCABULARY)), num_classes=3,
                                 label_names=["negative", "neutral", "positive"], preprocessor=preprocessor)
    if kind == "tagger":
        preprocessor = TaggingPreprocessor(wordpiece_tokenizer(VOCABULARY), sequence_length=16, start_id=2,
                                           separator_id=3, label_names=TAGS)
        return EncoderTokenClassifier(tiny_config("bert_like", vocab_size=len(VOCABULARY)),
                                      num_classes=len(TAGS), preprocessor=preprocessor)
    characters = character_tokenizer(vocabulary_size=128)  # ASCII; STX (2) starts, ETX (3) ends
    if kind == "causal_lm":
        preprocessor = CausalLMPreprocessor(characters, sequence_length=24, start_id=2, end_id=3)
        return CausalLM(tiny_config("llama_like", vocab_size=128, max_length=48), preprocessor=preprocessor)
    preprocessor = Seq2SeqPreprocessor(characters, source_length=24, target_length=24, start_id=2, end_id=3)
    return Seq2Seq(tiny_config("gpt2_like", vocab_size=128, max_length=48, tie_embeddings=False),
                   preprocessor=preprocessor)
