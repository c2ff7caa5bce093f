"""The processing-job contract of the monitoring scripts: errors, failure reasons, exit codes.

The monitoring bundle ships without ``training_code/training_env.py`` (only the feature schema comes
along), so this module is its small counterpart: a job's ``main`` raises :class:`DataError` or
:class:`ConfigurationError` with a message that names the bad file or field, the value and what to
do; :func:`run_job` turns that into exit code 2 and writes the message where SageMaker shows it.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

PROCESSING = Path("/opt/ml/processing")
# A processing job's ExitMessage is the first KiB of this file (DescribeProcessingJob).
DEFAULT_FAILURE_FILE = Path("/opt/ml/output/message")
MODEL_FILE = "xgboost-model"  # what model.tar.gz holds, as the XGBoost container loads it


class DataError(Exception):
    """Input data the job cannot use; the message says what is wrong and where."""


class ConfigurationError(Exception):
    """A setting or argument the job cannot use; the message names it, its value and what is allowed."""


def failure_file_from(argv: Sequence[str]) -> Path:
    """``--failure-file PATH`` (or ``--failure-file=PATH``) from the arguments, else the default."""
    arguments = list(argv)
    for index, argument in enumerate(arguments):
        if argument == "--failure-file" and index + 1 < len(arguments):
            return Path(arguments[index + 1])
        if argument.startswith("--failure-file="):
            return Path(argument.split("=", 1)[1])
    return DEFAULT_FAILURE_FILE


def write_failure(path: Path, message: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(message[:1024], encoding="utf-8")  # SageMaker keeps the first KiB
    except OSError as error:  # a read-only or missing /opt/ml must not hide the real failure
        print(f"(could not write the failure reason to {path}: {error})", file=sys.stderr)


def run_job(main: Callable[[Sequence[str]], None], argv: Sequence[str] | None = None) -> int:
    """Run ``main``: 0 on success; 2 with the message for bad data or settings; 1 for anything else."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        main(arguments)
    except (DataError, ConfigurationError) as error:
        kind = "Bad data" if isinstance(error, DataError) else "Bad configuration"
        write_failure(failure_file_from(arguments), f"{kind}: {error}")
        print(f"{kind}: {error}", file=sys.stderr, flush=True)
        return 2
    except Exception as error:  # noqa: BLE001  (the job must always leave a failure reason)
        traceback.print_exc()
        write_failure(failure_file_from(arguments), f"Internal error: {type(error).__name__}: {error}")
        return 1
    return 0


class JobArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as a ConfigurationError (exit 2, failure file written)."""

    def error(self, message: str) -> NoReturn:
        raise ConfigurationError(f"{self.prog}: {message} (run with --help for the arguments)")
