"""Writes the reference numbers of the T5 tests (run once; the tests need no torch):

* ``tiny_t5/``: a tiny T5 v1.0 (ReLU feed-forward, tied head with the ``d_model^-0.5``
  rescale), as transformers 5 saves it.
* ``tiny_t5_v1_1/``: a tiny T5 v1.1 (gated-GELU, untied head, no rescale, ``d_kv`` 8 with 6
  heads over a width of 32, so heads·d_kv ≠ d_model), in the layout of the published v1.1
  checkpoints (``tie_word_embeddings: false`` and a separate ``lm_head.weight``; transformers
  5 itself always ties, so its model is untied by hand here and the file written directly).
* ``tiny_t5*_expected.npz``: logits on padded source/target ids, and greedy continuations from
  the decoder start token 0 (argmax loop, full recompute each step).
* ``t5_buckets.npz``: transformers' ``T5Attention._relative_position_bucket`` on offsets
  -300..300, bidirectional and causal, for two bucket settings.
* ``tiny_spiece/spiece.model``: a 300-piece unigram SentencePiece model in T5's special-token
  layout (pad 0, eos 1, unk 2) trained on the package's tiny Shakespeare, and
  ``tiny_spiece_expected.json``: transformers' ``T5Tokenizer`` ids of a few texts.

    python -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install torch transformers safetensors numpy sentencepiece protobuf
    /tmp/refvenv/bin/python tests/convert/make_t5_reference.py
"""

import gzip
import io
import json
import os
import pathlib

import numpy as np
import sentencepiece
import torch
import transformers
from safetensors.torch import save_file
from transformers.models.t5.modeling_t5 import T5Attention

HERE = pathlib.Path(__file__).parent
SHAKESPEARE = HERE.parents[1] / "keras_transformers" / "data" / "tinyshakespeare.txt.gz"
SOURCES = [[5, 9, 17, 3, 22, 8, 1], [40, 2, 11, 1, 0, 0, 0]]  # eos 1, then padding
TARGETS = [[0, 7, 12, 30, 4], [0, 19, 6, 0, 0]]  # starting with the decoder start token 0
NEW_TOKENS = 8
TEXTS = ["First Citizen: Before we proceed any further, hear me speak.", "You are all resolved rather to die?",
         "  odd   spacing\tand unseen wordz 123"]


def perturbed(model, scale=0.3):
    # Norms start at 1: perturb every tensor so a mixed-up mapping shows, and strongly enough
    # that the greedy continuations vary from step to step (a test of the decoding cache).
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(scale * torch.randn_like(parameter))
    return model.eval()


def reference_numbers(model):
    """In float64: with unscaled scores and these large weights, transformers' own float32 logits
    are 1.3e-4 from its float64 ones (ours: 1.3e-5), too far for a 1e-4 comparison."""
    model = model.double()
    source = torch.tensor(SOURCES)
    source_mask = (source != 0).long()
    source_mask[:, 0] = 1
    target = torch.tensor(TARGETS)
    target_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        logits = model(input_ids=source, attention_mask=source_mask, decoder_input_ids=target,
                       decoder_attention_mask=target_mask).logits.numpy().astype(np.float32)
        continuation = torch.zeros([len(SOURCES), 1], dtype=torch.long)
        for _ in range(NEW_TOKENS):
            step = model(input_ids=source, attention_mask=source_mask, decoder_input_ids=continuation).logits
            continuation = torch.cat([continuation, step[:, -1].argmax(-1, keepdim=True)], dim=1)
    return dict(source_ids=source.numpy().astype(np.int32), source_mask=source_mask.numpy().astype(np.int32),
                target_ids=target.numpy().astype(np.int32), target_mask=target_mask.numpy().astype(np.int32),
                logits=logits, continuation=continuation.numpy().astype(np.int32))


def tiny_t5():
    torch.manual_seed(11)
    model = perturbed(transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=64, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=3, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=20, feed_forward_proj="relu",
        decoder_start_token_id=0)), scale=0.5)
    assert model.config.scale_decoder_outputs
    np.savez_compressed(HERE / "tiny_t5_expected.npz", **reference_numbers(model))
    model.float().save_pretrained(str(HERE / "tiny_t5"), safe_serialization=True)


def tiny_t5_v1_1():
    torch.manual_seed(12)
    config = transformers.T5Config(
        vocab_size=64, d_model=32, d_kv=8, d_ff=40, num_layers=2, num_heads=6, relative_attention_num_buckets=16,
        relative_attention_max_distance=32, feed_forward_proj="gated-gelu", decoder_start_token_id=0,
        tie_word_embeddings=False)
    model = perturbed(transformers.T5ForConditionalGeneration(config))
    assert not model.config.scale_decoder_outputs
    model.lm_head.weight = torch.nn.Parameter(0.3 * torch.randn(64, 32))  # the untied head of v1.1
    assert model.lm_head.weight is not model.shared.weight
    np.savez_compressed(HERE / "tiny_t5_v1_1_expected.npz", **reference_numbers(model))
    model = model.float()
    path = HERE / "tiny_t5_v1_1"
    path.mkdir(exist_ok=True)
    tensors = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()
               if name not in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")}
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    values = config.to_dict()
    for key in ("scale_decoder_outputs", "is_gated_act", "dense_act_fn"):
        values.pop(key, None)
    values.update(tie_word_embeddings=False, model_type="t5", architectures=["T5ForConditionalGeneration"])
    (path / "config.json").write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")


def buckets():
    offsets = torch.arange(-300, 301)
    arrays = {"offsets": offsets.numpy().astype(np.int32)}
    for num_buckets, max_distance in ((32, 128), (8, 20)):
        for bidirectional in (True, False):
            arrays[f"{num_buckets}_{max_distance}_{'bidirectional' if bidirectional else 'causal'}"] = (
                T5Attention._relative_position_bucket(offsets, bidirectional=bidirectional, num_buckets=num_buckets,
                                                      max_distance=max_distance).numpy().astype(np.int32))
    np.savez_compressed(HERE / "t5_buckets.npz", **arrays)


def spiece():
    text = gzip.decompress(SHAKESPEARE.read_bytes()).decode("utf-8").splitlines()[:4000]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(text), model_writer=model, vocab_size=300, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>")
    path = HERE / "tiny_spiece"
    path.mkdir(exist_ok=True)
    (path / "spiece.model").write_bytes(model.getvalue())
    tokenizer = transformers.T5Tokenizer.from_pretrained(str(path), extra_ids=0)
    expected = {"texts": TEXTS, "ids": [tokenizer(text)["input_ids"] for text in TEXTS],
                "decoded": [tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) for text in TEXTS]}
    (HERE / "tiny_spiece_expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    print("transformers", transformers.__version__, "torch", torch.__version__)
    tiny_t5()
    tiny_t5_v1_1()
    buckets()
    spiece()
    for name in ("tiny_t5", "tiny_t5_v1_1", "tiny_spiece"):
        for path in sorted((HERE / name).glob("*")):
            print(path.relative_to(HERE), os.path.getsize(path))
