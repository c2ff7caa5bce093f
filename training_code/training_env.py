"""The SageMaker training and processing contract: paths, environment, failures. One module, one root.

Every path derives from the ``/opt/ml`` root, which ``SAGEMAKER_BASE_DIR`` overrides (as in AWS's
training toolkit), so tests and the local runner use a temporary folder. Values are read when a
function is called, never at import, so one process can run several jobs with different roots.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

DEFAULT_BASE_DIR = "/opt/ml"
MODEL_FILE = "xgboost-model"  # the name the managed XGBoost container loads
DEFAULT_TRACKER_PORT = 9099


class DataError(Exception):
    """Input data the job cannot use; the message says what is wrong and where."""


class ConfigurationError(Exception):
    """A hyperparameter or job setting the job cannot use."""


def base_dir() -> Path:
    return Path(os.environ.get("SAGEMAKER_BASE_DIR", DEFAULT_BASE_DIR))


def model_dir() -> Path:
    return Path(os.environ.get("SM_MODEL_DIR", str(base_dir() / "model")))


def output_dir() -> Path:
    return base_dir() / "output"


def output_data_dir() -> Path:
    return Path(os.environ.get("SM_OUTPUT_DATA_DIR", str(output_dir() / "data")))


def failure_file() -> Path:
    """SageMaker shows the content of this file as the job's failure reason."""
    return output_dir() / "failure"


def checkpoint_dir() -> Path:
    """SageMaker syncs this folder with the job's checkpoint S3 URI (managed spot training).

    The trials of a tuning job share one checkpoint URI; with ``ML_PLATFORM_CHECKPOINT_PER_JOB=true``
    (set by the pipeline's tuning step) each training job keeps its checkpoints in a folder named after
    itself (``TRAINING_JOB_NAME``, set by SageMaker), so a trial resumes only from its own checkpoints.
    """
    root = Path(os.environ.get("SM_CHECKPOINT_DIR", str(base_dir() / "checkpoints")))
    job = os.environ.get("TRAINING_JOB_NAME", "")
    if os.environ.get("ML_PLATFORM_CHECKPOINT_PER_JOB") == "true" and job:
        return root / job
    return root


def input_config_dir() -> Path:
    return base_dir() / "input" / "config"


def channel_dir(name: str) -> Path:
    """The local folder of an input channel (``SM_CHANNEL_TRAIN`` and friends)."""
    return Path(os.environ.get(f"SM_CHANNEL_{name.upper()}", str(base_dir() / "input" / "data" / name)))


def processing_dir(*parts: str) -> Path:
    """A folder of a processing job: ``/opt/ml/processing/<parts>`` (inputs and outputs we chose)."""
    return base_dir().joinpath("processing", *parts)


def _resource_config() -> dict[str, Any]:
    path = input_config_dir() / "resourceconfig.json"
    return json.loads(path.read_text()) if path.exists() else {}


def hosts() -> list[str]:
    """Every instance of the job (``SM_HOSTS``), sorted so that all instances agree on the order."""
    if "SM_HOSTS" in os.environ:
        return sorted(json.loads(os.environ["SM_HOSTS"]))
    return sorted(_resource_config().get("hosts", ["algo-1"]))


def current_host() -> str:
    return os.environ.get("SM_CURRENT_HOST") or _resource_config().get("current_host") or hosts()[0]


def tracker_address() -> tuple[str, int]:
    """Where the XGBoost collective's tracker listens: on the first host, at a fixed port.

    ``ML_PLATFORM_TRACKER_HOST`` overrides the host for local runs, where the SageMaker host names
    (algo-1, ...) do not resolve.
    """
    host = os.environ.get("ML_PLATFORM_TRACKER_HOST") or hosts()[0]
    port = int(os.environ.get("ML_PLATFORM_TRACKER_PORT", DEFAULT_TRACKER_PORT))
    return host, port


def resolve_host(host: str) -> str:
    return socket.gethostbyname(host)


def num_gpus() -> int:
    return int(os.environ.get("SM_NUM_GPUS", "0") or 0)


def num_cpus() -> int:
    return int(os.environ.get("SM_NUM_CPUS", "0") or 0) or (os.cpu_count() or 1)


def hyperparameters_file() -> dict[str, str]:
    """``/opt/ml/input/config/hyperparameters.json`` (SageMaker writes every value as a string)."""
    path = input_config_dir() / "hyperparameters.json"
    return {str(k): str(v) for k, v in json.loads(path.read_text()).items()} if path.exists() else {}


def write_failure(message: str) -> None:
    path = failure_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(message[:1024])  # SageMaker truncates the reason; keep the head


def run_job(main: Callable[[Sequence[str]], None], argv: Sequence[str] | None = None) -> int:
    """Run a job's ``main``: exit 0 on success; on any failure write the reason and exit non-zero.

    Bad data and bad settings exit 2 with the message alone; anything else exits 1 with the
    exception's type (and the traceback on stderr for the CloudWatch log).
    """
    try:
        main(list(sys.argv[1:] if argv is None else argv))
    except (DataError, ConfigurationError) as error:
        kind = "Bad data" if isinstance(error, DataError) else "Bad configuration"
        write_failure(f"{kind}: {error}")
        print(f"{kind}: {error}", file=sys.stderr, flush=True)
        return 2
    except Exception as error:  # noqa: BLE001  (the job must always leave a failure reason)
        traceback.print_exc()
        write_failure(f"Internal error: {type(error).__name__}: {error}")
        return 1
    return 0
