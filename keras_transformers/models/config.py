"""TransformerConfig: one dataclass for every family, and the named presets."""

import dataclasses
import difflib

from keras_transformers.layers.feedforward import ACTIVATIONS
from keras_transformers.layers.normalization import NORM_TYPES

POSITION_ENCODINGS = ("learned", "sinusoidal", "rotary")


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Every architectural switch of the zoo. A family is a preset of this, not a class.

    Attributes:
        vocab_size: token ids lie in ``[0, vocab_size)``.
        hidden_size: model width ``d_model``.
        num_layers: blocks in the encoder (or decoder, for decoder-only models).
        num_heads: attention heads.
        intermediate_size: feed-forward hidden width ``d_ff``.
        num_key_value_heads: key/value heads (grouped-query attention); ``num_heads`` if None.
        num_decoder_layers: decoder blocks of a seq2seq model; ``num_layers`` if None.
        activation: ``relu`` | ``gelu`` | ``gelu_approximate`` | ``swiglu``.
        norm_type: ``layer_norm`` | ``rms_norm``.
        norm_first: pre-norm (True) or post-norm (False) blocks.
        norm_epsilon: epsilon of every norm.
        position_encoding: ``learned`` | ``sinusoidal`` | ``rotary``.
        max_length: longest sequence the model accepts.
        rope_max_wavelength: RoPE base, with rotary positions.
        type_vocab_size: segment (token type) embeddings, BERT-style; 0 for none.
        embedding_norm: normalize the summed embeddings (BERT, BART); pre-norm models
            instead normalize the last block's output.
        scale_embeddings: multiply token embeddings by ``√hidden_size`` (Vaswani et al.).
        dropout: dropout on embeddings and sublayer outputs.
        attention_dropout: dropout on attention weights.
        use_bias: biases in attention and feed-forward projections.
        tie_embeddings: language-model heads reuse the token embedding (``h·Eᵀ``).
        pad_token_id: the padding id.
        initializer_range: stddev of the normal initializer of embeddings and kernels.
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    num_key_value_heads: int = None
    num_decoder_layers: int = None
    activation: str = "gelu"
    norm_type: str = "layer_norm"
    norm_first: bool = False
    norm_epsilon: float = 1e-12
    position_encoding: str = "learned"
    max_length: int = 512
    rope_max_wavelength: float = 10000.0
    type_vocab_size: int = 0
    embedding_norm: bool = True
    scale_embeddings: bool = False
    dropout: float = 0.1
    attention_dropout: float = 0.1
    use_bias: bool = True
    tie_embeddings: bool = True
    pad_token_id: int = 0
    initializer_range: float = 0.02

    def __post_init__(self):
        def require(condition, message):
            if not condition:
                raise ValueError(message)

        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                     "max_length"):
            value = getattr(self, name)
            require(isinstance(value, int) and value > 0, f"`{name}` must be a positive integer, got {value!r}.")
        for name in ("num_key_value_heads", "num_decoder_layers"):
            value = getattr(self, name)
            require(value is None or (isinstance(value, int) and value > 0),
                    f"`{name}` must be a positive integer or None, got {value!r}.")
        require(isinstance(self.type_vocab_size, int) and self.type_vocab_size >= 0,
                f"`type_vocab_size` must be a non-negative integer, got {self.type_vocab_size!r}.")
        require(self.hidden_size % self.num_heads == 0,
                f"`hidden_size` ({self.hidden_size}) must be divisible by `num_heads` ({self.num_heads}).")
        require(self.num_heads % self.key_value_heads == 0,
                f"`num_heads` ({self.num_heads}) must be a multiple of `num_key_value_heads` "
                f"({self.num_key_value_heads}).")
        require(self.activation in ACTIVATIONS,
                f"`activation` must be one of {ACTIVATIONS}, got {self.activation!r}.")
        require(self.norm_type in NORM_TYPES, f"`norm_type` must be one of {NORM_TYPES}, got {self.norm_type!r}.")
        require(self.position_encoding in POSITION_ENCODINGS,
                f"`position_encoding` must be one of {POSITION_ENCODINGS}, got {self.position_encoding!r}.")
        require(self.position_encoding != "rotary" or self.head_dim % 2 == 0,
                f"Rotary positions need an even head_dim, got {self.head_dim}.")
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            require(0.0 <= value < 1.0, f"`{name}` must be in [0, 1), got {value!r}.")
        require(0 <= self.pad_token_id < self.vocab_size,
                f"`pad_token_id` ({self.pad_token_id}) must lie in [0, vocab_size={self.vocab_size}).")

    @property
    def head_dim(self):
        return self.hidden_size // self.num_heads

    @property
    def key_value_heads(self):
        return self.num_key_value_heads or self.num_heads

    @property
    def decoder_layers(self):
        return self.num_decoder_layers or self.num_layers

    def replace(self, **changes):
        """A copy with some fields changed, e.g. ``config.replace(vocab_size=65)``."""
        _check_field_names(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        _check_field_names(values)
        return cls(**values)

    @classmethod
    def from_preset(cls, name, **changes):
        """A named preset, optionally changed: ``TransformerConfig.from_preset("llama_small", vocab_size=65)``."""
        if name not in PRESETS:
            close = difflib.get_close_matches(name, PRESETS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"Unknown preset {name!r}.{hint} Presets: {', '.join(sorted(PRESETS))}.")
        return PRESETS[name].replace(**changes)


def _check_field_names(values):
    fields = {field.name for field in dataclasses.fields(TransformerConfig)}
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"TransformerConfig has no field {key!r}.{hint}")


_BERT = TransformerConfig()  # the defaults are BERT-base

PRESETS = {
    # Devlin et al., 2018: post-norm, GELU, learned positions, segment embeddings.
    "bert_base": _BERT.replace(type_vocab_size=2),
    # Sanh et al., 2019: BERT-base halved in depth, no segment embeddings.
    "distilbert_base": _BERT.replace(num_layers=6),
    # Liu et al., 2019: BERT-base with a byte-level BPE vocabulary (pad id 1).
    "roberta_base": _BERT.replace(vocab_size=50265, max_length=514, type_vocab_size=1,
                                  norm_epsilon=1e-5, pad_token_id=1),
    # sentence-transformers/all-MiniLM-L6-v2 (MiniLM-L6-H384): 6 layers, width 384.
    "minilm_l6": _BERT.replace(hidden_size=384, num_layers=6, intermediate_size=1536,
                               type_vocab_size=2),
    # Radford et al., 2019, 124M: pre-norm, tanh-GELU, final norm, tied head.
    "gpt2_small": _BERT.replace(vocab_size=50257, max_length=1024, activation="gelu_approximate",
                                norm_first=True, norm_epsilon=1e-5, embedding_norm=False),
    # A small Llama: RoPE, RMSNorm, SwiGLU, grouped-query attention, no biases.
    "llama_small": TransformerConfig(
        vocab_size=32000, hidden_size=512, num_layers=8, num_heads=8, num_key_value_heads=2,
        intermediate_size=1376, activation="swiglu", norm_type="rms_norm", norm_first=True,
        norm_epsilon=1e-5, position_encoding="rotary", max_length=2048, embedding_norm=False,
        dropout=0.0, attention_dropout=0.0, use_bias=False, tie_embeddings=False),
    # Vaswani et al., 2017, base: post-norm, ReLU, sinusoidal, √d embedding scale, shared vocab.
    "transformer_base": TransformerConfig(
        vocab_size=37000, hidden_size=512, num_layers=6, num_heads=8, intermediate_size=2048,
        activation="relu", norm_epsilon=1e-6, position_encoding="sinusoidal", max_length=1024,
        embedding_norm=False, scale_embeddings=True, dropout=0.1, attention_dropout=0.0),
    # Lewis et al., 2019, base: 6+6 post-norm layers, GELU, learned positions, embedding norm.
    "bart_base": _BERT.replace(vocab_size=50265, num_layers=6, max_length=1024, norm_epsilon=1e-5,
                               pad_token_id=1),
    # Small enough for unit tests: every family's switches still apply via ``replace``.
    "tiny": TransformerConfig(
        vocab_size=64, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
        norm_epsilon=1e-5, max_length=64, dropout=0.0, attention_dropout=0.0),
}
