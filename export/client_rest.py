"""Ask a TF Serving REST endpoint (port 8501) for a model's text-in answer.

    python client_rest.py http://localhost:8501 sentiment "a gripping, funny film" "a dull plot"

Needs ``requests`` (``pip install requests``). The body uses the columnar "inputs" format,
one key per signature input: ``{"signature_name": ..., "inputs": {"text": [...]}}``.
"""

import json
import sys


def predict_body(texts, signature_name="serving_default"):
    """The JSON body of a predict request for raw texts."""
    return {"signature_name": signature_name, "inputs": {"text": list(texts)}}


def predict_ids_body(token_ids, padding_mask):
    """The JSON body of a ``predict_ids`` request (token ids you tokenized yourself)."""
    return {"signature_name": "predict_ids", "inputs": {"token_ids": token_ids, "padding_mask": padding_mask}}


def main(server, model, texts):
    import requests

    response = requests.post(f"{server}/v1/models/{model}:predict", json=predict_body(texts), timeout=60)
    response.raise_for_status()
    print(json.dumps(response.json()["outputs"], indent=2))


if __name__ == "__main__":
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
