"""The SageMaker serving contract in one place: where the model is, which port, how many workers,
and the server's own settings (``ML_PLATFORM_SERVING_*``: threads per batch, connection balancing).

Read when called, never at import, so tests and the local runner can point one process at a
temporary model folder. A malformed setting raises :class:`SettingError` naming the variable.
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
# A batch gets one scoring thread per this many rows, up to ML_PLATFORM_SERVING_THREADS and the idle
# cores. Measured on the 2-core development VM with a core idle (the whole handler, README Speed),
# two threads took 1.0-1.1x one thread's time at 2,048 rows, 0.85-0.94x at 4,096 and 0.79-0.86x at
# 8,192, at 1.3-1.5x its CPU: two threads from 8,192 rows, where the gain is clear.
DEFAULT_ROWS_PER_THREAD = 4096


class SettingError(ValueError):
    """An environment variable of the serving contract holds a value the server cannot use."""


def _positive_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise SettingError(f"{name} must be a whole number of at least 1 (got {value!r}); unset it for {default}")
    return int(value)


def model_dir() -> Path:
    return Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))


def port() -> int:
    return int(os.environ.get("SAGEMAKER_BIND_TO_PORT", str(DEFAULT_PORT)))


def workers() -> int:
    """One worker process per core unless SAGEMAKER_MODEL_SERVER_WORKERS says otherwise."""
    return int(os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS", "0") or 0) or (os.cpu_count() or 1)


def scoring_threads() -> int:
    """The most threads one request's batch is split over (ML_PLATFORM_SERVING_THREADS, default:
    the cores; 1 scores every batch on the worker's own thread)."""
    return _positive_int("ML_PLATFORM_SERVING_THREADS", os.cpu_count() or 1)


def rows_per_thread() -> int:
    """Rows each scoring thread needs at least (ML_PLATFORM_SERVING_ROWS_PER_THREAD): smaller
    batches stay on one thread, where starting another costs more than it saves."""
    return _positive_int("ML_PLATFORM_SERVING_ROWS_PER_THREAD", DEFAULT_ROWS_PER_THREAD)


def rebalance() -> bool:
    """Whether workers move keep-alive connections to even out their counts
    (ML_PLATFORM_SERVING_REBALANCE=false turns it off, e.g. to measure without it)."""
    value = os.environ.get("ML_PLATFORM_SERVING_REBALANCE", "true").strip().lower()
    if value not in ("true", "false", "1", "0"):
        raise SettingError(f"ML_PLATFORM_SERVING_REBALANCE must be true or false (got {value!r})")
    return value in ("true", "1")


def default_accept() -> str:
    """What a request without Accept (or with */*) gets back."""
    return os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "text/csv")
