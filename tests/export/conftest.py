import pytest

from keras_transformers.export import export_savedmodel
from tests.export.models import build

GENERATION = {"max_new_tokens": 10}


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``exported(kind)`` → ``(model, version directory)``: each model built and exported
    (verified) once per session, on first use."""
    cache = {}

    def get(kind):
        if kind not in cache:
            model = build(kind)
            generation = GENERATION if kind in ("causal_lm", "seq2seq") else None
            path = export_savedmodel(model, tmp_path_factory.mktemp("serving") / kind, generation=generation)
            cache[kind] = model, path
        return cache[kind]

    return get
