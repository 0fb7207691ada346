"""MLflow tracking of a training run (optional: ``pip install "keras_transformers[tracking]"``)."""

import os

from keras_transformers.jobs.common import CURVES_FILE, METRICS_FILE, MODEL_FILE, JobError, one_line
from keras_transformers.jobs.tokenizer_files import _read_json, _write_json


def _mlflow_run(uri, experiment, out, settings, config):
    """Start (or, for a resumed run directory, reopen) the MLflow run of ``out``."""
    try:
        import mlflow
    except ImportError:
        raise JobError('--mlflow needs MLflow: pip install "keras_transformers[tracking]"') from None
    if uri:
        mlflow.set_tracking_uri(uri)
    uri = mlflow.get_tracking_uri()  # default (MLflow 3): sqlite:///mlflow.db here, artifacts in ./mlruns
    mlflow.set_experiment(experiment)
    id_path = os.path.join(out, "mlflow_run.json")
    previous = _read_json(id_path) if os.path.exists(id_path) else None
    if previous and previous.get("tracking_uri") == uri:
        run = mlflow.start_run(run_id=previous["run_id"])
    else:
        run = mlflow.start_run(run_name=os.path.basename(os.path.abspath(out)))
        params = {f"run.{key}": value for key, value in settings.items() if value is not None}
        params.update({f"config.{key}": value for key, value in config.to_dict().items()})
        mlflow.log_params({key: str(value)[:500] for key, value in params.items()})
        _write_json(id_path, {"tracking_uri": uri, "run_id": run.info.run_id,
                              "experiment_id": run.info.experiment_id})
    return mlflow, run


def _log_mlflow_model(tracking, model, out):
    """The final model into the MLflow run: MLflow's Keras flavour, else the file as an artifact."""
    import logging

    import mlflow.keras

    mlflow_logger = logging.getLogger("mlflow")
    level = mlflow_logger.level
    mlflow_logger.setLevel(logging.ERROR)  # "saving a Keras model without specifying model signature"
    try:
        mlflow.keras.log_model(model, name="model", pip_requirements=["keras_transformers"])
    except Exception as error:  # the flavour's own checks; the artifact still keeps the model
        print(f"Note: mlflow.keras.log_model failed ({one_line(error)}); logging {MODEL_FILE} as an artifact.")
        tracking.log_artifact(os.path.join(out, MODEL_FILE), artifact_path="model")
    finally:
        mlflow_logger.setLevel(level)
    tracking.log_artifact(os.path.join(out, METRICS_FILE))
    if os.path.exists(os.path.join(out, CURVES_FILE)):
        tracking.log_artifact(os.path.join(out, CURVES_FILE))
