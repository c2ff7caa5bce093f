"""Run [build training set ->] preprocess -> train -> evaluate on this machine, in the SageMaker layout,
with no AWS account.

Each step runs the real script from ``training_code/`` as its own process, with the environment
and folders SageMaker gives it (``SAGEMAKER_BASE_DIR`` points at a folder under ``.local/``):
processing jobs read ``/opt/ml/processing/input`` and write ``/opt/ml/processing/output``; the
training job reads ``/opt/ml/input/data/<channel>`` and ``hyperparameters.json`` and writes
``/opt/ml/model``, which is packed into ``model.tar.gz`` as SageMaker does.

With ``--source feature_store`` (the default, as in staging and prod) the generated customers are
written as a local offline store (Parquet, with later records and duplicate writes) and a labels
dataset, and ``build_training_set.py`` builds the point-in-time training set from them with DuckDB:
the pipeline's BuildTrainingSet step, with the local engine. ``--source raw`` trains on the
generated raw file, as a new environment does.

    python -m scripts.local_training --rows 100000            # one worker
    python -m scripts.local_training --source raw             # from the raw file, no feature store
    python -m scripts.local_training --workers 2              # XGBoost collective on localhost
    python -m scripts.local_training --interrupt              # kill mid-training, resume from checkpoint
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from scripts.local_feature_store import check_point_in_time, write_local_feature_store

ROOT = Path(__file__).resolve().parent.parent
TRAINING_CODE = ROOT / "training_code"
SOURCES = ("feature_store", "raw")
DEFAULT_RUN_DIR = ROOT / ".local" / "training"
# XGBoost's evaluation log; in distributed runs the tracker prefixes the time of day.
ROUND = re.compile(r"^(?:\[\d\d:\d\d:\d\d\] )?\[(\d+)\]\t(.*)$")
FINAL = re.compile(r"^\[final\]\t(.*)$")

# The local offline store's names (the job gets the environment's Glue database and table).
LOCAL_DATABASE = "local_features"
LOCAL_FEATURE_TABLE = "customers_v1"

# On 2-core machines two OpenMP threads are several times slower than one: train with one thread.
DEFAULT_HYPERPARAMETERS = {
    "num_round": "300",
    "max_depth": "6",
    "eta": "0.1",
    "early_stopping_rounds": "30",
    "nthread": "1",
    "checkpoint_frequency": "10",
}


class StepFailedError(RuntimeError):
    """A job exited non-zero; the message carries its failure reason."""


@dataclass
class TrainingRun:
    """The outcome of one (possibly distributed, possibly interrupted) training job."""

    model_dir: Path
    final_metrics: dict[str, float]
    log: list[str] = field(default_factory=list)
    interrupted_at_round: int | None = None
    resumed_from: str | None = None


def _environment(base_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_"))}
    environment.update({"SAGEMAKER_BASE_DIR": str(base_dir), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    environment.update(extra or {})
    return environment


def _failure(base_dir: Path) -> str:
    path = base_dir / "output" / "failure"
    return path.read_text() if path.exists() else "(no failure file)"


def run_processing(script: str, base_dir: Path, args: Sequence[str] = ()) -> str:
    """Run a processing script (preprocess.py, evaluate.py) like a SageMaker processing job."""
    result = subprocess.run(
        [sys.executable, str(TRAINING_CODE / script), *args],
        env=_environment(base_dir),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StepFailedError(f"{script} exited {result.returncode}: {_failure(base_dir)}")
    return result.stdout


def generate_raw_data(base_dir: Path, rows: int, seed: int) -> Path:
    sys.path.insert(0, str(TRAINING_CODE))
    try:
        from churn_data import generate_customers  # the generator ships with the training code
    finally:
        sys.path.remove(str(TRAINING_CODE))
    raw = base_dir / "processing" / "input" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    path = raw / "customers.csv"
    generate_customers(rows, seed=seed).to_csv(path, index=False)
    return path


def build_training_set_locally(run_dir: Path, raw_dir: Path, rows: int, seed: int) -> tuple[str, str]:
    """Offline store and labels from generated customers, then build_training_set.py with DuckDB.

    The training set lands in ``raw_dir`` (what preprocess reads). Returns the job's summary line
    and the point-in-time check's.
    """
    from churn_data import generate_customers  # training_code is on the path (scripts.local_feature_store)
    from feature_schema import load_schema

    schema = load_schema()
    customers = generate_customers(rows, seed=seed)
    store = write_local_feature_store(customers, schema, run_dir / "feature-store", seed=seed)
    base = run_dir / "build-training-set"
    output = run_processing(
        "build_training_set.py",
        base,
        [
            "--engine",
            "duckdb",
            "--offline-store-dir",
            str(store.offline_store),
            "--labels-uri",
            str(store.labels_dir),
            "--labels-dir",
            str(store.labels_dir),
            "--database",
            LOCAL_DATABASE,
            "--feature-table",
            LOCAL_FEATURE_TABLE,
        ],
    )
    built = base / "processing" / "output" / "training_set" / "training_set.csv"
    raw_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(built, raw_dir / built.name)
    wrong = check_point_in_time(pd.read_csv(built, dtype={schema.record_identifier.name: str}), customers, schema)
    if wrong:
        raise StepFailedError(f"{wrong} training-set rows do not have their customer's features as of the label time")
    check = (
        f"point in time: every row has its customer's features as of its label time; {store.later_records} later "
        f"records and {store.duplicate_writes} duplicate writes in the offline store ({store.records} records) left out"
    )
    return output.strip(), check


def _complete_checkpoints(directory: Path) -> list[Path]:
    """Checkpoints train.py finished writing (it writes ``checkpoint-N.partial.ubj``, then renames it)."""
    return sorted(p for p in directory.glob("checkpoint-*.ubj") if re.fullmatch(r"checkpoint-\d{6}\.ubj", p.name))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _host_dir(run_dir: Path, host: str, channels: dict[str, Path], hyperparameters: dict[str, str]) -> Path:
    """One host's /opt/ml: input/config files and input/data/<channel> linked to its shard."""
    base = run_dir / "hosts" / host
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters, indent=2))
    for name, source in channels.items():
        target = base / "input" / "data" / name
        if target.exists() or target.is_symlink():
            shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.mkdir()
        for file in sorted(source.iterdir()):
            (target / file.name).symlink_to(file)
    return base


def run_training(
    run_dir: Path,
    splits_dir: Path,
    *,
    workers: int = 1,
    hyperparameters: dict[str, str] | None = None,
    interrupt: bool = False,
    on_round: Callable[[int, str], None] | None = None,
) -> TrainingRun:
    """Train with ``workers`` hosts on localhost; with ``interrupt``, SIGKILL the job after its first
    checkpoint and start it again, as SageMaker does after a spot interruption."""
    params = {**DEFAULT_HYPERPARAMETERS, **(hyperparameters or {})}
    hosts = [f"algo-{i + 1}" for i in range(workers)]
    shards = {name: sorted((splits_dir / name).iterdir()) for name in ("train", "validation")}
    if workers > 1 and len(shards["train"]) < workers:
        raise StepFailedError(f"{workers} workers need at least {workers} training shards; preprocess with --shards")
    port = _free_port()
    bases = []
    for index, host in enumerate(hosts):
        channels = {}
        for name, files in shards.items():
            # ShardedByS3Key: every host gets every workers-th file.
            folder = run_dir / "shards" / host / name
            folder.mkdir(parents=True, exist_ok=True)
            for file in files[index::workers]:
                link = folder / file.name
                if not link.exists():
                    link.symlink_to(file)
            channels[name] = folder
        bases.append(_host_dir(run_dir, host, channels, params))

    def start() -> list[subprocess.Popen[str]]:
        processes = []
        for host, base in zip(hosts, bases, strict=True):
            extra = {
                "SM_HOSTS": json.dumps(hosts),
                "SM_CURRENT_HOST": host,
                "SM_MODEL_DIR": str(base / "model"),
                "SM_CHANNEL_TRAIN": str(base / "input" / "data" / "train"),
                "SM_CHANNEL_VALIDATION": str(base / "input" / "data" / "validation"),
                "SM_NUM_GPUS": "0",
                "ML_PLATFORM_TRACKER_HOST": "127.0.0.1",
                "ML_PLATFORM_TRACKER_PORT": str(port),
            }
            processes.append(
                subprocess.Popen(
                    [sys.executable, str(TRAINING_CODE / "train.py")],
                    env=_environment(base, extra),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        return processes

    outcome = TrainingRun(model_dir=bases[0] / "model", final_metrics={})
    processes = start()
    if interrupt:
        checkpoints = bases[0] / "checkpoints"
        while not _complete_checkpoints(checkpoints) and processes[0].poll() is None:
            time.sleep(0.005)
        for process in processes:
            process.send_signal(signal.SIGKILL)
        for process in processes:
            process.wait()
        newest = _complete_checkpoints(checkpoints)
        if not newest:
            raise StepFailedError("training finished before its first checkpoint; train longer to interrupt it")
        outcome.interrupted_at_round = int(newest[-1].stem.split("-")[1])
        port = _free_port()  # the killed tracker's port may linger
        for base in bases[1:]:
            # Every host restarts from the checkpoints SageMaker restores from S3 (written by host 1).
            shutil.copytree(checkpoints, base / "checkpoints", dirs_exist_ok=True)
        processes = start()

    assert processes[0].stdout is not None
    for line in processes[0].stdout:
        line = line.rstrip("\n")
        outcome.log.append(line)
        if line.startswith("Resuming from checkpoint"):
            outcome.resumed_from = line
        if (match := ROUND.match(line)) and on_round:
            on_round(int(match[1]), match[2])
        if match := FINAL.match(line):
            for item in match[1].split("\t"):
                name, _, value = item.partition(":")
                outcome.final_metrics[name] = float(value)
    for host, base, process in zip(hosts, bases, processes, strict=True):
        if process.wait() != 0:
            tail = "\n".join(outcome.log[-5:])
            raise StepFailedError(f"training on {host} exited {process.returncode}: {_failure(base)}\n{tail}")
    return outcome


def package_model(model_dir: Path, destination: Path) -> Path:
    """``model.tar.gz`` with the model folder's files at its root, as SageMaker uploads it."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(destination, "w:gz") as archive:
        for path in sorted(model_dir.iterdir()):
            archive.add(path, arcname=path.name)
    return destination


@dataclass
class LocalPipelineResult:
    run_dir: Path
    model_archive: Path
    report: Path
    evaluation: dict[str, object]
    training: TrainingRun
    seconds: dict[str, float]


def run_pipeline(
    run_dir: Path,
    *,
    rows: int,
    seed: int = 7,
    workers: int = 1,
    interrupt: bool = False,
    hyperparameters: dict[str, str] | None = None,
    progress: Callable[[str], None] = print,
    source: str = "raw",
) -> LocalPipelineResult:
    """The whole training pipeline, locally: data [, training set], preprocess, train, package, evaluate."""
    if source not in SOURCES:
        raise ValueError(f"unknown training data source {source!r}; use one of {', '.join(SOURCES)}")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    seconds: dict[str, float] = {}
    processing = run_dir / "preprocess"

    started = time.perf_counter()
    if source == "feature_store":
        progress(f"feature store: {rows} customers (seed {seed}) as a local offline store (Parquet) and labels")
        progress("build training set: the point-in-time query over the offline store and the labels, in DuckDB")
        summary_line, check = build_training_set_locally(
            run_dir, processing / "processing" / "input" / "raw", rows, seed
        )
        progress(f"  {summary_line}")
        progress(f"  {check}")
        seconds["training set"] = time.perf_counter() - started
        started = time.perf_counter()
    else:
        progress(f"generate: {rows} customers (seed {seed})")
        generate_raw_data(processing, rows, seed)
    progress("preprocess: validate against the feature schema, split by customer id")
    for line in run_processing("preprocess.py", processing, ["--shards", str(max(workers, 2))]).splitlines():
        progress(f"  {line}")
    seconds["preprocess"] = time.perf_counter() - started

    started = time.perf_counter()
    total = int({**DEFAULT_HYPERPARAMETERS, **(hyperparameters or {})}["num_round"])
    last_shown = [0]

    def on_round(round_: int, metrics: str) -> None:
        if round_ + 1 - last_shown[0] >= max(total // 10, 1):
            last_shown[0] = round_ + 1
            auc = re.search(r"validation-auc:([0-9.]+)", metrics)
            progress(f"  train: round {round_ + 1}/{total}" + (f", validation AUC {auc[1]}" if auc else ""))

    progress(
        f"train: XGBoost on {workers} worker(s)" + (", interrupted after its first checkpoint" if interrupt else "")
    )
    training = run_training(
        run_dir / "train",
        processing / "processing" / "output",
        workers=workers,
        hyperparameters=hyperparameters,
        interrupt=interrupt,
        on_round=on_round,
    )
    if training.resumed_from:
        progress(f"  killed at round {training.interrupted_at_round}; {training.resumed_from}")
    seconds["train"] = time.perf_counter() - started

    started = time.perf_counter()
    archive = package_model(training.model_dir, run_dir / "train" / "output" / "model.tar.gz")
    evaluation_base = run_dir / "evaluate"
    model_input = evaluation_base / "processing" / "input" / "model"
    model_input.mkdir(parents=True, exist_ok=True)
    shutil.copy(archive, model_input / "model.tar.gz")
    shutil.copytree(processing / "processing" / "output" / "test", evaluation_base / "processing" / "input" / "test")
    progress("evaluate: test split, metrics and report")
    run_processing("evaluate.py", evaluation_base)
    seconds["evaluate"] = time.perf_counter() - started
    output = evaluation_base / "processing" / "output" / "evaluation"
    return LocalPipelineResult(
        run_dir=run_dir,
        model_archive=archive,
        report=output / "evaluation.html",
        evaluation=json.loads((output / "evaluation.json").read_text()),
        training=training,
        seconds=seconds,
    )


def summary(result: LocalPipelineResult) -> str:
    metrics = result.evaluation["binary_classification_metrics"]
    assert isinstance(metrics, dict)
    return "\n".join(
        [
            (
                f"validation AUC {result.training.final_metrics['validation-auc']:.4f} "
                f"(best round {int(result.training.final_metrics['best-round'])}); "
                f"test AUC {metrics['auc']['value']:.4f}, accuracy {metrics['accuracy']['value']:.4f}, "
                f"F1 {metrics['f1']['value']:.4f}"
            ),
            f"model:  {result.model_archive}",
            f"report: {result.report}",
            "time:   " + ", ".join(f"{step} {value:.1f} s" for step, value in result.seconds.items()),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="customers to generate (default 100000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=1, help="training hosts on localhost (default 1)")
    parser.add_argument("--interrupt", action="store_true", help="kill training after a checkpoint, then resume")
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    parser.add_argument(
        "--source",
        choices=SOURCES,
        default="feature_store",
        help="training data: a point-in-time training set from a local offline store (default), or raw files",
    )
    args = parser.parse_args(argv)
    if args.rows < 1000:
        parser.error(f"--rows {args.rows} is too few for three splits with both classes; use at least 1000")
    if not 1 <= args.workers <= 8:
        parser.error(f"--workers {args.workers} must be between 1 and 8")
    try:
        result = run_pipeline(
            args.run_dir,
            rows=args.rows,
            seed=args.seed,
            workers=args.workers,
            interrupt=args.interrupt,
            source=args.source,
        )
    except StepFailedError as error:
        print(f"Local training failed: {error}", file=sys.stderr)
        return 1
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
