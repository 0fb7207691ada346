from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="keras_transformers",
    version="0.1.0",
    description="Encoder, decoder and encoder-decoder transformers for Keras 3 on TensorFlow.",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["keras_transformers", "keras_transformers.*"]),
    # The console script's front door: standard library only, so `--help` needs no TensorFlow.
    py_modules=["keras_transformers_cli"],
    package_data={"keras_transformers.data": ["*.gz", "CORPORA.md"], "keras_transformers.export": ["*.txt", "*.cc"]},
    install_requires=[
        "tensorflow==2.21.*",
        "keras>=3.15",
        "keras-hub",
        "tensorflow-text==2.21.*",
        "numpy",
        "sacrebleu",
        "seqeval",
        "tensorflow-serving-api==2.21.*",  # PredictionLog protos for the warmup requests
        "safetensors",  # checkpoint import (NumPy API) and LoRA adapters
        "tensorboard",  # `keras-transformers train` writes TensorBoard logs (tf.summary needs it)
    ],
    extras_require={"onnx": ["tf2onnx", "onnxruntime"],  # export_onnx, `keras-transformers export onnx`
                    "benchmarks": ["matplotlib"],  # the benchmarks' PNGs; `train` writes curves.png with it
                    "tracking": ["mlflow>=3"],  # `keras-transformers train --mlflow`
                    "pipelines": ["prefect>=3"],  # pipelines/ (the Prefect flow)
                    "notebooks": ["nbclient", "nbformat", "ipykernel", "matplotlib"],  # notebooks/
                    # What the default test run needs (tests marked slow may need "pipelines" too).
                    "test": ["pytest>=8", "pytest-timeout", "pytest-xdist", "tf2onnx", "onnxruntime", "matplotlib",
                             "mlflow>=3", "nbclient", "nbformat", "ipykernel"]},
    entry_points={"console_scripts": ["keras-transformers=keras_transformers_cli:main"]},
)
