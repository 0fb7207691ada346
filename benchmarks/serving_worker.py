"""The per-process half of ``serving_latency.py``: one export process, and one serving process
per exported artifact.

``python serving_worker.py export WORKDIR`` (the only role that imports keras_transformers,
Keras and KerasHub) reads ``WORKDIR/plan.json``, builds the models with random weights,
exports every artifact into ``WORKDIR`` and writes ``WORKDIR/manifest.json`` (paths, export
times, errors, signatures) and the reference outputs of the Keras models on the parity inputs
(``WORKDIR/reference/<cell>.npz``).

``python serving_worker.py serve KIND PATH`` loads one artifact as a server would, with
TensorFlow alone (``KIND`` ``tf``: ``tf.saved_model.load``) or ONNX Runtime alone (``onnx``:
``PATH/model.onnx`` and ``PATH``'s own ``onnx_generate.OnnxGenerator``; TensorFlow is not
imported), then answers one JSON command a line on stdin, on a private copy of the original
stdout (library messages go to stderr):

* ``{"cmd": "time", "mode": M, "inputs": NPZ, "n": N}``: ``N`` calls, each timed with
  ``time.perf_counter`` around the call and the fetch of every output to NumPy; answers
  ``{"times": [seconds, ...]}``.
* ``{"cmd": "parity", "mode": M, "inputs": NPZ, "out": NPZ}``: one call, outputs saved.
* ``{"cmd": "info"}``: versions, thread settings, whether Keras or keras_transformers got
  imported (they must not be).

Modes: ``signature:NAME`` (a SavedModel signature, inputs fed by name), ``onnx_model``
(``model.onnx``, default session options; ``onnx_model:N``: ``intra_op_num_threads=N``),
``onnx_generate:K`` (``OnnxGenerator.generate`` of ``prompt_ids``, ``K`` tokens, greedy),
``signature_loop:NAME:K`` (greedy generation of ``K`` tokens by calling a forward-only
signature on the whole, growing sequence ``K`` times: all that an export without a generate
endpoint allows).
"""

import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def log(message):
    print(f"[serving_worker {os.getpid()}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- serving side

# A serving process must run the artifact from the SavedModel alone, as TF Serving does: these
# Python packages are made unimportable before TensorFlow is imported (TensorFlow itself would
# otherwise import Keras).
BLOCKED = ("keras", "keras_hub", "keras_nlp", "keras_transformers", "tf_keras", "tensorflow_text")


def text_op_libraries():
    """tensorflow-text's op libraries (``.so``), found without importing its Python package:
    TF Serving links them; a Python server loads them with ``tf.load_op_library``."""
    import importlib.util

    spec = importlib.util.find_spec("tensorflow_text")
    if spec is None:
        return []
    ops = os.path.join(spec.submodule_search_locations[0], "python", "ops")
    return sorted(os.path.join(ops, name) for name in os.listdir(ops) if name.endswith(".so"))


class TFServer:
    def __init__(self, path):
        libraries = text_op_libraries()
        for name in BLOCKED:
            sys.modules[name] = None
        import tensorflow as tf

        self.tf = tf
        for library in libraries:
            tf.load_op_library(library)
        self.op_libraries = [os.path.basename(library) for library in libraries]
        start = time.perf_counter()
        self.loaded = tf.saved_model.load(path)
        self.load_s = time.perf_counter() - start
        self.signatures = sorted(self.loaded.signatures.keys())

    def info(self):
        tf = self.tf
        return {"tensorflow": tf.__version__, "load_s": self.load_s, "signatures": self.signatures,
                "op_libraries_loaded": self.op_libraries,
                "intra_op_parallelism_threads": tf.config.threading.get_intra_op_parallelism_threads(),
                "inter_op_parallelism_threads": tf.config.threading.get_inter_op_parallelism_threads()}

    def _feeds(self, function, arrays):
        tf = self.tf
        specs = function.structured_input_signature[1]
        missing = sorted(set(specs) - set(arrays))
        if missing:
            raise KeyError(f"inputs lack {missing} for signature inputs {sorted(specs)}")
        return {name: tf.constant(np.asarray(arrays[name]).astype(spec.dtype.as_numpy_dtype)
                                  if spec.dtype != tf.string else arrays[name].astype(object))
                for name, spec in specs.items()}

    def prepare(self, mode, arrays):
        kind, _, rest = mode.partition(":")
        if kind == "signature":
            function = self.loaded.signatures[rest]

            def call():
                feeds = self._feeds(function, arrays)
                return {key: value.numpy() for key, value in function(**feeds).items()}
            return call
        if kind == "signature_loop":
            name, steps = rest.rsplit(":", 1)
            function, steps = self.loaded.signatures[name], int(steps)
            specs = function.structured_input_signature[1]
            (output,) = function.structured_outputs.keys()
            prompt = np.asarray(arrays["prompt_ids"])

            def call():
                tokens = prompt
                for _ in range(steps):
                    feeds = {"token_ids": tokens, "padding_mask": np.ones_like(tokens)}
                    feeds = {key: self.tf.constant(value.astype(specs[key].dtype.as_numpy_dtype))
                             for key, value in feeds.items()}
                    logits = function(**feeds)[output][:, -1]
                    next_ids = self.tf.argmax(logits, axis=-1, output_type=self.tf.int32).numpy()
                    tokens = np.concatenate([tokens, next_ids[:, None].astype(tokens.dtype)], axis=1)
                return {"generated_ids": tokens[:, prompt.shape[1]:]}
            return call
        raise ValueError(f"unknown mode {mode!r} for a SavedModel")


class OnnxServer:
    def __init__(self, path):
        import onnxruntime

        self.ort = onnxruntime
        self.path = path
        self.sessions = {}
        self.generator = None
        self.load_s = {}

    def info(self):
        options = self.ort.SessionOptions()
        return {"onnxruntime": self.ort.__version__, "load_s": self.load_s,
                "providers": ["CPUExecutionProvider"],
                "session_options": {"intra_op_num_threads": options.intra_op_num_threads,
                                    "inter_op_num_threads": options.inter_op_num_threads,
                                    "graph_optimization_level": str(options.graph_optimization_level),
                                    "execution_mode": str(options.execution_mode)}}

    def prepare(self, mode, arrays):
        if mode == "onnx_model" or mode.startswith("onnx_model:"):
            # "onnx_model:N": a session with intra_op_num_threads=N (a diagnostic; default 0 = all cores)
            threads = int(mode.split(":")[1]) if ":" in mode else 0
            if threads not in self.sessions:
                file = self.path if self.path.endswith(".onnx") else os.path.join(self.path, "model.onnx")
                options = self.ort.SessionOptions()
                options.intra_op_num_threads = threads
                start = time.perf_counter()
                self.sessions[threads] = self.ort.InferenceSession(file, options, providers=["CPUExecutionProvider"])
                self.load_s[f"model.onnx (intra_op_num_threads={threads})"] = time.perf_counter() - start
            session = self.sessions[threads]
            types = {"tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_,
                     "tensor(float)": np.float32}
            feeds = {i.name: np.ascontiguousarray(np.asarray(arrays[i.name]).astype(types[i.type]))
                     for i in session.get_inputs()}
            names = [o.name for o in session.get_outputs()]

            def call():
                return dict(zip(names, session.run(None, feeds)))
            return call
        if mode.startswith("onnx_generate:"):
            steps = int(mode.split(":")[1])
            if self.generator is None:
                start = time.perf_counter()
                sys.path.insert(0, self.path)  # the loop export_onnx copied beside the files
                from onnx_generate import OnnxGenerator
                self.generator = OnnxGenerator(self.path)
                self.load_s["decoder_step.onnx"] = time.perf_counter() - start
            prompt = np.asarray(arrays["prompt_ids"])

            def call():
                out = self.generator.generate(prompt, steps)
                return {"generated_ids": out["token_ids"][:, prompt.shape[1]:]}
            return call
        raise ValueError(f"unknown mode {mode!r} for ONNX")


def _plain(value):
    """An output as an array ``np.savez`` stores without pickling (bytes → str)."""
    value = np.asarray(value)
    if value.dtype != object:
        return value
    text = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in value.ravel()]
    return np.array(text, dtype=str).reshape(value.shape)


def serve(kind, path):
    # Answers go to a private copy of stdout; anything printed by the libraries goes to stderr.
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    if kind == "onnx":  # ONNX Runtime alone: not even TensorFlow
        for name in BLOCKED + ("tensorflow",):
            sys.modules[name] = None
    try:
        server = TFServer(path) if kind == "tf" else OnnxServer(path)
    except Exception as error:  # report why, then exit
        channel.write(json.dumps({"ready": False, "error": f"{type(error).__name__}: {error}"}) + "\n")
        return 1
    channel.write(json.dumps({"ready": True}) + "\n")
    prepared, inputs = {}, {}
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["cmd"] == "info":
                info = server.info()
                info["imported"] = {name: sys.modules.get(name) is not None
                                    for name in ("keras", "keras_hub", "keras_transformers", "tensorflow_text",
                                                 "tensorflow", "onnxruntime")}
                info["pid"] = os.getpid()
                answer = info
            elif request["cmd"] in ("time", "parity"):
                key = (request["mode"], request["inputs"])
                if key not in prepared:
                    if request["inputs"] not in inputs:
                        with np.load(request["inputs"]) as data:
                            inputs[request["inputs"]] = {name: data[name] for name in data.files}
                    prepared[key] = server.prepare(request["mode"], inputs[request["inputs"]])
                call = prepared[key]
                if request["cmd"] == "parity":
                    outputs = call()
                    np.savez(request["out"], **{k: _plain(v) for k, v in outputs.items()})
                    answer = {"saved": request["out"], "outputs": sorted(outputs)}
                else:
                    times = []
                    for _ in range(int(request["n"])):
                        start = time.perf_counter()
                        call()
                        times.append(time.perf_counter() - start)
                    answer = {"times": times}
            elif request["cmd"] == "exit":
                break
            else:
                raise ValueError(f"unknown command {request['cmd']!r}")
        except Exception as error:
            answer = {"error": f"{type(error).__name__}: {error}"}
        channel.write(json.dumps(answer) + "\n")
    return 0


# ----------------------------------------------------------------------------- export side

def export(workdir):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import keras
    import keras_hub
    import tensorflow as tf

    import keras_transformers
    from keras_transformers import CausalLM, EncoderClassifier, TransformerConfig
    from keras_transformers.export import export_savedmodel
    from keras_transformers.export.onnx import export_onnx
    from keras_transformers.preprocessing import CausalLMPreprocessor, TextPreprocessor
    from keras_transformers.tokenizers import character_tokenizer, wordpiece_tokenizer

    with open(os.path.join(workdir, "plan.json")) as f:
        plan = json.load(f)
    manifest = {"artifacts": {}, "errors": {}, "export_s": {}, "notes": {},
                "versions": {"keras": keras.__version__, "keras_hub": keras_hub.__version__,
                             "tensorflow": tf.__version__, "keras_transformers": keras_transformers.__version__}}
    try:
        import onnx
        import onnxruntime
        import tf2onnx
        manifest["versions"].update(onnx=onnx.__version__, onnxruntime=onnxruntime.__version__,
                                    tf2onnx=tf2onnx.__version__)
    except ImportError as error:
        manifest["errors"]["onnx_import"] = str(error)
    os.makedirs(os.path.join(workdir, "reference"), exist_ok=True)
    verify = plan["verify"]

    def attempt(name, function):
        log(f"export {name}")
        start = time.perf_counter()
        try:
            result = function()
        except Exception as error:
            manifest["errors"][name] = f"{type(error).__name__}: {error}"[:2000]
            log(f"export {name} failed: {manifest['errors'][name][:300]}")
            return None
        manifest["export_s"][name] = round(time.perf_counter() - start, 2)
        return result

    def save_reference(cell, **outputs):
        np.savez(os.path.join(workdir, "reference", f"{cell}.npz"),
                 **{k: np.asarray(v) for k, v in outputs.items()})

    def arrays(cell):
        with np.load(os.path.join(workdir, "inputs", f"{cell}.npz")) as data:
            return {name: data[name] for name in data.files}

    # ------------------------------------------------------------------ encoder classifier
    e = plan["encoder"]
    if e:
        keras.utils.set_random_seed(0)
        config = TransformerConfig.from_preset("minilm_l6", **e["config_changes"])
        vocabulary = e["vocabulary"]
        models = {}
        for length in e["lengths"]:
            preprocessor = TextPreprocessor(wordpiece_tokenizer(vocabulary), sequence_length=length,
                                            start_id=vocabulary.index("[CLS]"),
                                            separator_id=vocabulary.index("[SEP]"), segment_ids=True)
            model = EncoderClassifier(config, num_classes=2, label_names=["negative", "positive"],
                                      preprocessor=preprocessor)
            model.build(None)
            if models:  # the same weights for every sequence length
                model.set_weights(next(iter(models.values())).get_weights())
            models[length] = model
        first = models[e["lengths"][0]]
        manifest["notes"]["encoder_params"] = int(first.count_params())
        for length, model in models.items():
            for xla in (False, True):
                name = f"ours_savedmodel{'_xla' if xla else ''}_L{length}"
                path = attempt(name, lambda m=model, x=xla, n=name: export_savedmodel(
                    m, os.path.join(workdir, n), jit_compile=x, verify=verify))
                if path:
                    manifest["artifacts"][name] = path
            # references: the Keras model on the parity texts of this length
            for cell in e["parity_text_cells"][str(length)]:
                texts = arrays(cell)["text"]
                probabilities = tf.nn.softmax(model(model.preprocessor(tf.constant(texts.astype(object))),
                                                    training=False)).numpy()
                save_reference(cell, probabilities=probabilities, label_ids=probabilities.argmax(-1))
        path = attempt("ours_onnx_encoder", lambda: export_onnx(first, os.path.join(workdir, "ours_onnx_encoder"),
                                                                 verify=verify))
        if path:
            manifest["artifacts"]["ours_onnx_encoder"] = path
        for cell in e["parity_ids_cells"]:
            feeds = {k: tf.constant(v) for k, v in arrays(cell).items()}
            save_reference(cell, logits=first(feeds, training=False).numpy())

        # KerasHub: the same shape (BERT: post-norm, learned positions, segments, [CLS] pooler)
        keras.utils.set_random_seed(0)
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=config.vocab_size, num_layers=config.num_layers, num_heads=config.num_heads,
            hidden_dim=config.hidden_size, intermediate_dim=config.intermediate_size, dropout=0.0,
            max_sequence_length=config.max_length, num_segments=config.type_vocab_size)
        hub = keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=2, preprocessor=None,
                                                  dropout=0.0)
        manifest["notes"]["keras_hub_encoder_params"] = int(hub.count_params())
        manifest["notes"]["keras_hub_encoder_text"] = (
            "BertTextClassifier.export (keras.Model.export) traces call() on token ids; the preprocessor "
            "(tokenizer, packing) is not in the SavedModel, so KerasHub has no text-in column.")
        for cell in e["parity_ids_cells"]:
            save_reference("keras_hub_" + cell, logits=np.asarray(hub.predict(arrays(cell), verbose=0)))
        for fmt in plan["keras_hub_formats"]:
            name = f"keras_hub_{fmt}_encoder"
            target = os.path.join(workdir, name) + (".onnx" if fmt == "onnx" else "")
            path = attempt(name, lambda t=target, f=fmt: (hub.export(t, format=f), t)[1])
            if path:
                manifest["artifacts"][name] = path
        del models, first, hub

    # ------------------------------------------------------------------ causal LM
    g = plan["causal_lm"]
    if g:
        keras.utils.set_random_seed(0)
        config = TransformerConfig.from_preset("gpt2_small", **g["config_changes"])
        # Code points as ids (pad 0, start 2), no end token: every call makes all its new tokens.
        preprocessor = CausalLMPreprocessor(character_tokenizer(vocabulary_size=config.vocab_size),
                                            sequence_length=g["prompt_length"], start_id=2, end_id=None)
        lm = CausalLM(config, preprocessor=preprocessor)
        lm.build(None)
        manifest["notes"]["causal_lm_params"] = int(lm.count_params())
        settings = {"max_new_tokens": g["new_tokens"]}
        for xla in (False, True):
            name = f"ours_savedmodel{'_xla' if xla else ''}_lm"
            path = attempt(name, lambda x=xla, n=name: export_savedmodel(
                lm, os.path.join(workdir, n), jit_compile=x, generation=settings, verify=verify))
            if path:
                manifest["artifacts"][name] = path
        path = attempt("ours_onnx_lm", lambda: export_onnx(lm, os.path.join(workdir, "ours_onnx_lm"), verify=verify))
        if path:
            manifest["artifacts"]["ours_onnx_lm"] = path
        for cell in g["parity_generate_cells"]:
            prompt = arrays(cell)["prompt_ids"]
            out = lm.generate(prompt, g["new_tokens"], padding_mask=np.ones_like(prompt))
            save_reference(cell, generated_ids=np.asarray(out["token_ids"])[:, prompt.shape[1]:])
        for cell in g["parity_forward_cells"]:
            feeds = {k: tf.constant(v) for k, v in arrays(cell).items()}
            save_reference(cell, logits=lm(feeds, training=False).numpy())

        keras.utils.set_random_seed(0)
        backbone = keras_hub.models.GPT2Backbone(
            vocabulary_size=config.vocab_size, num_layers=config.num_layers, num_heads=config.num_heads,
            hidden_dim=config.hidden_size, intermediate_dim=config.intermediate_size, dropout=0.0,
            max_sequence_length=config.max_length)
        hub_lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
        hub_lm.compile(sampler="greedy", jit_compile=False)
        manifest["notes"]["keras_hub_causal_lm_params"] = int(hub_lm.count_params())
        for cell in g["parity_generate_cells"]:
            prompt = arrays(cell)["prompt_ids"]
            buffer = np.pad(prompt, [[0, 0], [0, g["new_tokens"]]])
            mask = np.pad(np.ones_like(prompt), [[0, 0], [0, g["new_tokens"]]]).astype(bool)
            out = hub_lm.generate({"token_ids": buffer, "padding_mask": mask}, stop_token_ids=None)
            save_reference("keras_hub_" + cell, generated_ids=np.asarray(out["token_ids"])[:, prompt.shape[1]:])
        for cell in g["parity_forward_cells"]:
            save_reference("keras_hub_" + cell, logits=np.asarray(hub_lm.predict(arrays(cell), verbose=0)))
        name = "keras_hub_tf_saved_model_lm"
        path = attempt(name, lambda: (hub_lm.export(os.path.join(workdir, name)), os.path.join(workdir, name))[1])
        if path:
            manifest["artifacts"][name] = path
            loaded = tf.saved_model.load(path)
            signature = loaded.signatures["serving_default"]
            manifest["notes"]["keras_hub_lm_export_signatures"] = {
                key: {"inputs": sorted(sig.structured_input_signature[1]),
                      "outputs": {k: v.shape.as_list() for k, v in sig.structured_outputs.items()}}
                for key, sig in loaded.signatures.items()}
            manifest["notes"]["keras_hub_lm_generate_export"] = (
                "GPT2CausalLM.export (keras.Model.export) traces the model's call only: its serving_default "
                f"maps {sorted(signature.structured_input_signature[1])} to logits; there is no generate "
                "endpoint, so generation from it is a client loop of uncached forward passes "
                "(signature_loop), timed as such.")
    with open(os.path.join(workdir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    return 0


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "export":
        sys.exit(export(sys.argv[2]))
    if role == "serve":
        sys.exit(serve(sys.argv[2], sys.argv[3]))
    raise SystemExit(f"usage: {sys.argv[0]} export WORKDIR | serve tf|onnx PATH")
