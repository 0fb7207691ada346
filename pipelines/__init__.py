"""Orchestrated runs of keras_transformers' jobs (Prefect); see ``train_flow.py``."""
