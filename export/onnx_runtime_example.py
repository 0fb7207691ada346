"""Run an ``export_onnx`` directory with ONNX Runtime only (no TensorFlow).

    python onnx_runtime_example.py lm_onnx 2 84 111     # a CausalLM: continue these ids
    python onnx_runtime_example.py tagger_onnx 2 5 6 3  # any model: logits of these ids

The ONNX graphs take token ids: tokenize with the model's tokenizer (its vocabulary is in the
SavedModel export's ``assets/tokenizer/``), or with the same ids you trained on.
"""

import json
import os
import sys

import numpy as np


def logits(directory, token_ids):
    """``model.onnx`` on one row of ids: ``(1, len, ...)`` logits."""
    import onnxruntime

    session = onnxruntime.InferenceSession(os.path.join(directory, "model.onnx"), providers=["CPUExecutionProvider"])
    names = [graph_input.name for graph_input in session.get_inputs()]
    ids = np.array([token_ids], np.int32)
    feeds = {name: ids if name.endswith("token_ids") else np.ones_like(ids) for name in names}
    feeds.update({name: np.zeros_like(ids) for name in names if name == "segment_ids"})
    return session.run(None, feeds)[0]


def main(directory, token_ids):
    if os.path.exists(os.path.join(directory, "generation.json")):
        sys.path.insert(0, directory)  # the export ships its own generate loop
        from onnx_generate import OnnxGenerator

        generator = OnnxGenerator(directory)
        if generator.config["seq2seq"]:
            out = generator.generate([[2]], 20, encoder_token_ids=[token_ids])  # 2: your start id
        else:
            out = generator.generate([token_ids], 20)
        print(json.dumps(out["token_ids"][out["padding_mask"]].tolist()))
    else:
        print(logits(directory, token_ids).argmax(-1).tolist())


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], [int(token) for token in sys.argv[2:]])
