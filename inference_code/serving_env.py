"""The SageMaker serving contract in one place: where the model is, which port, how many workers.

Read when called, never at import, so tests and the local runner can point one process at a
temporary model folder.
"""

from __future__ import annotations

import os
from pathlib import Path

MODEL_FILE = "xgboost-model"  # the name the managed XGBoost container loads
DEFAULT_PORT = 8080
# InvokeEndpoint's payload limit: larger requests are refused with 413 before they are read.
MAX_REQUEST_BYTES = 6 * 1024 * 1024
SUPPORTED_CONTENT_TYPES = ("text/csv", "application/json")
SUPPORTED_ACCEPTS = ("text/csv", "application/json", "application/jsonlines")


def model_dir() -> Path:
    return Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))


def port() -> int:
    return int(os.environ.get("SAGEMAKER_BIND_TO_PORT", str(DEFAULT_PORT)))


def workers() -> int:
    """One single-threaded worker process per core unless SAGEMAKER_MODEL_SERVER_WORKERS says otherwise."""
    return int(os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS", "0") or 0) or (os.cpu_count() or 1)


def default_accept() -> str:
    """What a request without Accept (or with */*) gets back."""
    return os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "text/csv")
