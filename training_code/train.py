"""Training (script mode of SageMaker's XGBoost framework container, and locally).

- Hyperparameters: from the command line SageMaker passes (``--max_depth 6``), else
  ``/opt/ml/input/config/hyperparameters.json``; unknown names and bad values are refused.
- Data: channels ``train`` and ``validation`` (``SM_CHANNEL_TRAIN`` / ``SM_CHANNEL_VALIDATION``),
  CSV without header (label first) or Parquet, as preprocess.py writes them.
- Model: ``xgboost-model`` in ``SM_MODEL_DIR``, cut at the best round, with the schema's feature
  names, which the serving container loads as is.
- Metrics: XGBoost's evaluation log of the validation set (``[12]	validation-auc:0.86``) and a last
  line ``[final]`` with the best round's validation and training values; the pipeline's metric
  definitions read both. (The training set is evaluated once: every round would cost more than
  the boosting.)
- Checkpoints: every ``checkpoint_frequency`` rounds to ``/opt/ml/checkpoints`` (written
  atomically); a restarted job (managed spot interruption) resumes from the newest one.
- GPU: ``device=auto`` trains on CUDA when the instance has a GPU (``SM_NUM_GPUS``), else on CPU.
- Distributed: with several hosts (``SM_HOSTS``) every host trains on its own shard of the data
  (``ShardedByS3Key``) and XGBoost's collective joins them; the first host runs the tracker.
- ``nthread=0`` uses one thread per CPU of the instance; set ``nthread=1`` on 2-core machines,
  where two OpenMP threads are several times slower than one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import xgboost as xgb
from numpy.typing import NDArray

from churn_data import TrainingData, read_training_channel, require_both_classes
from feature_schema import load_schema
from training_env import (
    MODEL_FILE,
    ConfigurationError,
    DataError,
    channel_dir,
    checkpoint_dir,
    current_host,
    hosts,
    hyperparameters_file,
    model_dir,
    num_cpus,
    num_gpus,
    output_data_dir,
    resolve_host,
    run_job,
    tracker_address,
)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d{6})\.ubj$")
# Training-set metrics are computed on at most this many rows per worker (a seeded sample).
TRAIN_METRIC_ROWS = 50_000


@dataclass(frozen=True)
class Hyperparameters:
    num_round: int = 300
    max_depth: int = 6
    eta: float = 0.1
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    min_child_weight: float = 1.0
    gamma: float = 0.0
    reg_lambda: float = 1.0
    reg_alpha: float = 0.0
    scale_pos_weight: float = 1.0
    max_bin: int = 256
    early_stopping_rounds: int = 30
    eval_metric: str = "auc,logloss"
    tree_method: str = "hist"
    device: str = "auto"
    nthread: int = 0
    seed: int = 42
    checkpoint_frequency: int = 10
    checkpoints_to_keep: int = 2

    # SageMaker names two of them after Python keywords.
    ALIASES: ClassVar[dict[str, str]] = {"lambda": "reg_lambda", "alpha": "reg_alpha"}
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "num_round": (1, 100_000),
        "max_depth": (1, 64),
        "eta": (1e-6, 1.0),
        "subsample": (0.01, 1.0),
        "colsample_bytree": (0.01, 1.0),
        "min_child_weight": (0, 1e9),
        "gamma": (0, 1e9),
        "reg_lambda": (0, 1e9),
        "reg_alpha": (0, 1e9),
        "scale_pos_weight": (1e-6, 1e6),
        "max_bin": (2, 65_536),
        "early_stopping_rounds": (0, 100_000),
        "nthread": (0, 1024),
        "seed": (0, 2**31 - 1),
        "checkpoint_frequency": (1, 100_000),
        "checkpoints_to_keep": (1, 100),
    }
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "tree_method": ("hist", "approx", "exact"),
        "device": ("auto", "cpu", "cuda"),
    }

    @classmethod
    def parse(cls, values: dict[str, str]) -> Hyperparameters:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        parsed: dict[str, Any] = {}
        for raw_name, raw_value in values.items():
            if raw_name.startswith("sagemaker_"):
                continue  # the framework's own settings (program, submit directory, ...)
            name = cls.ALIASES.get(raw_name, raw_name)
            if name not in fields:
                known = sorted(set(fields) - set(cls.ALIASES.values()) | set(cls.ALIASES))
                raise ConfigurationError(f"unknown hyperparameter {raw_name!r}; known: {', '.join(known)}")
            kind: type[Any] = type(fields[name].default)
            try:
                value = kind(float(raw_value)) if kind is int and float(raw_value).is_integer() else kind(raw_value)
            except ValueError:
                raise ConfigurationError(
                    f"hyperparameter {raw_name} = {raw_value!r} is not a{'n integer' if kind is int else ' number'}"
                ) from None
            if name in cls.RANGES:
                low, high = cls.RANGES[name]
                if not low <= value <= high:
                    raise ConfigurationError(
                        f"hyperparameter {raw_name} = {raw_value} must be between {low:g} and {high:g}"
                    )
            if name in cls.CHOICES and value not in cls.CHOICES[name]:
                raise ConfigurationError(
                    f"hyperparameter {raw_name} = {raw_value!r}; choose one of {', '.join(cls.CHOICES[name])}"
                )
            parsed[name] = value
        return cls(**parsed)

    def booster_params(self, device: str, nthread: int) -> dict[str, Any]:
        return {
            "objective": "binary:logistic",
            "eval_metric": [m.strip() for m in self.eval_metric.split(",") if m.strip()],
            "max_depth": self.max_depth,
            "eta": self.eta,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "min_child_weight": self.min_child_weight,
            "gamma": self.gamma,
            "lambda": self.reg_lambda,
            "alpha": self.reg_alpha,
            "scale_pos_weight": self.scale_pos_weight,
            "max_bin": self.max_bin,
            "tree_method": self.tree_method,
            "device": device,
            "nthread": nthread,
            "seed": self.seed,
        }


def parse_command_line(argv: Sequence[str]) -> dict[str, str]:
    """``--name value`` pairs, as SageMaker passes hyperparameters to a script."""
    pairs: dict[str, str] = {}
    items = list(argv)
    if len(items) % 2:
        raise ConfigurationError(f"hyperparameters come as --name value pairs; got {' '.join(items)!r}")
    for flag, value in zip(items[::2], items[1::2], strict=True):
        if not flag.startswith("--"):
            raise ConfigurationError(f"expected --name before {flag!r}")
        pairs[flag[2:].replace("-", "_")] = value
    return pairs


def choose_device(requested: str) -> str:
    gpus = num_gpus()
    if requested == "auto":
        return "cuda" if gpus > 0 else "cpu"
    if requested == "cuda" and gpus == 0:
        raise ConfigurationError(
            "device=cuda but this instance has no GPU (SM_NUM_GPUS=0); pick a GPU instance type "
            "(ml.g5, ml.p3, ...) or device=auto"
        )
    return requested


# --- checkpoints ----------------------------------------------------------------------------------


def newest_checkpoint(directory: Path) -> tuple[xgb.Booster, Path] | None:
    """The newest readable checkpoint; a file torn by an interruption is skipped."""
    if not directory.is_dir():
        return None
    candidates = sorted((p for p in directory.iterdir() if CHECKPOINT_PATTERN.match(p.name)), reverse=True)
    for path in candidates:
        try:
            return xgb.Booster(model_file=str(path)), path
        except xgb.core.XGBoostError:
            print(f"Skipping unreadable checkpoint {path.name}", flush=True)
    return None


class Checkpoint(xgb.callback.TrainingCallback):
    """Saves the model every ``frequency`` rounds (first host only), atomically, keeping the newest few."""

    def __init__(self, directory: Path, frequency: int, keep: int, writer: bool) -> None:
        super().__init__()
        self.directory, self.frequency, self.keep, self.writer = directory, frequency, keep, writer

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: Any) -> bool:
        rounds = model.num_boosted_rounds()
        if self.writer and rounds % self.frequency == 0:
            self.directory.mkdir(parents=True, exist_ok=True)
            final = self.directory / f"checkpoint-{rounds:06d}.ubj"
            partial = final.with_suffix(".partial.ubj")
            model.save_model(str(partial))
            os.replace(partial, final)
            old = sorted(p for p in self.directory.iterdir() if CHECKPOINT_PATTERN.match(p.name))
            for path in old[: -self.keep]:
                path.unlink(missing_ok=True)
        return False


# --- distributed ----------------------------------------------------------------------------------


@contextlib.contextmanager
def collective_context() -> Iterator[tuple[int, int]]:
    """(rank, world size); with more than one host, joins XGBoost's collective for the block."""
    all_hosts = hosts()
    if len(all_hosts) == 1:
        yield 0, 1
        return
    host = current_host()
    if host not in all_hosts:
        raise ConfigurationError(f"SM_CURRENT_HOST {host!r} is not among SM_HOSTS {all_hosts}")
    rank, world = all_hosts.index(host), len(all_hosts)
    tracker_host, port = tracker_address()
    address = resolve_host(tracker_host)
    tracker = None
    if rank == 0:
        tracker = xgb.tracker.RabitTracker(n_workers=world, host_ip=address, port=port, sortby="task")
        tracker.start()
    print(f"Distributed training: {host} is worker {rank} of {world}; tracker at {address}:{port}", flush=True)
    with xgb.collective.CommunicatorContext(
        dmlc_tracker_uri=address, dmlc_tracker_port=port, dmlc_task_id=str(rank), dmlc_timeout=600
    ):
        yield rank, world
    if tracker is not None:
        waiter = threading.Thread(target=tracker.wait_for, daemon=True)
        waiter.start()
        waiter.join(timeout=60)


# --- training -------------------------------------------------------------------------------------


def training_sample(data: TrainingData, names: list[str], seed: int) -> tuple[xgb.DMatrix, int]:
    """At most TRAIN_METRIC_ROWS training rows (a seeded sample), for the training-set metrics."""
    rows = data.rows
    if rows <= TRAIN_METRIC_ROWS:
        chosen = np.arange(rows)
    else:
        chosen = np.sort(np.random.default_rng(seed).choice(rows, TRAIN_METRIC_ROWS, replace=False))
    sample = xgb.DMatrix(data.features[chosen], label=data.labels[chosen], feature_names=names, nthread=1)
    return sample, len(chosen)


def final_metrics(
    booster: xgb.Booster,
    train_sample: xgb.DMatrix,
    dvalid: xgb.DMatrix,
    labels: NDArray[Any],
    history: dict[str, float],
    world: int,
) -> dict[str, float]:
    """Metrics of the final (best-round) model, the same on every worker.

    Validation AUC and log loss come from XGBoost's own evaluation log at the best round (already
    combined across workers). Training metrics are computed once here, on a sample of at most
    TRAIN_METRIC_ROWS rows per worker: XGBoost does not reuse its training-time predictions for
    them, and a prediction over the whole training set costs as much as a sixth of the boosting.
    Accuracy and F1 come from confusion counts summed across workers, since a worker alone sees
    only its shard.
    """
    metrics = {f"validation-{name}": value for name, value in history.items()}
    trained = booster.eval_set([(train_sample, "train")])
    metrics.update({f"train-{n}": float(v) for n, v in re.findall(r"train-(\w+):([-+0-9.eE]+)", trained)})
    predicted = booster.predict(dvalid) >= 0.5
    actual = labels >= 0.5
    counts = np.array(
        [
            (predicted & actual).sum(),
            (predicted & ~actual).sum(),
            (~predicted & ~actual).sum(),
            (~predicted & actual).sum(),
        ],
        dtype=np.float64,
    )
    if world > 1:
        counts = xgb.collective.allreduce(counts, xgb.collective.Op.SUM)
    tp, fp, tn, fn = counts
    metrics["validation-accuracy"] = float((tp + tn) / counts.sum())
    metrics["validation-f1"] = float(2 * tp / (2 * tp + fp + fn)) if tp else 0.0
    return metrics


def _history_at(
    booster: xgb.Booster, dvalid: xgb.DMatrix, log: dict[str, dict[str, list[float]]], best: int, done: int
) -> dict[str, float]:
    """Validation metrics at round ``best`` from the evaluation log; re-evaluated if that round was
    trained before a resume (the log only holds this run's rounds)."""
    rounds = log.get("validation", {})
    if best >= done and rounds and all(len(values) > best - done for values in rounds.values()):
        return {name: float(values[best - done]) for name, values in rounds.items()}
    evaluated = booster.eval_set([(dvalid, "validation")])
    return {name: float(value) for name, value in re.findall(r"validation-(\w+):([-+0-9.eE]+)", evaluated)}


def train(hp: Hyperparameters) -> dict[str, Any]:
    schema = load_schema()
    device = choose_device(hp.device)
    nthread = hp.nthread or num_cpus()
    with collective_context() as (rank, world):
        train_data = read_training_channel(channel_dir("train"), schema, channel="train")
        validation = read_training_channel(channel_dir("validation"), schema, channel="validation")
        require_both_classes(validation.labels, channel="validation")
        names = list(schema.model_features)
        if train_data.features.shape[1] != len(names):
            raise DataError(f"training data has {train_data.features.shape[1]} features; the schema has {len(names)}")
        dtrain = xgb.QuantileDMatrix(
            train_data.features, label=train_data.labels, feature_names=names, max_bin=hp.max_bin, nthread=nthread
        )
        dvalid = xgb.QuantileDMatrix(
            validation.features, label=validation.labels, feature_names=names, ref=dtrain, nthread=nthread
        )
        print(
            f"Training on {train_data.rows} rows ({len(train_data.files)} files), validating on {validation.rows}; "
            f"device={device}, nthread={nthread}, worker {rank + 1}/{world}",
            flush=True,
        )

        resumed = newest_checkpoint(checkpoint_dir())
        start_model, done = None, 0
        if resumed is not None:
            start_model, path = resumed
            done = start_model.num_boosted_rounds()
            print(f"Resuming from checkpoint {path.name}: {done} of {hp.num_round} rounds done", flush=True)
            start_model.set_param({"device": device, "nthread": nthread})
        remaining = max(hp.num_round - done, 0)
        callbacks: list[xgb.callback.TrainingCallback] = [
            Checkpoint(checkpoint_dir(), hp.checkpoint_frequency, hp.checkpoints_to_keep, writer=rank == 0)
        ]
        if hp.early_stopping_rounds:
            callbacks.append(
                xgb.callback.EarlyStopping(rounds=hp.early_stopping_rounds, data_name="validation", save_best=False)
            )
        log: dict[str, dict[str, list[float]]] = {}
        booster = xgb.train(
            hp.booster_params(device, nthread),
            dtrain,
            num_boost_round=remaining,
            evals=[(dvalid, "validation")],  # the training set is evaluated once, at the end
            evals_result=log,
            xgb_model=start_model,
            callbacks=callbacks,
            verbose_eval=1,
        )
        best = _best_round(booster)
        final = booster[: best + 1] if best + 1 < booster.num_boosted_rounds() else booster
        history = _history_at(final, dvalid, log, best, done)
        sample, sampled = training_sample(train_data, names, hp.seed)
        metrics = final_metrics(final, sample, dvalid, validation.labels, history, world)
        final.set_param({"nthread": 1})  # the serving container scores with one thread per worker
        if rank == 0:
            line = "\t".join(f"{name}:{value:.6f}" for name, value in metrics.items())
            print(f"[final]\t{line}\tbest-round:{best + 1}", flush=True)
            model_dir().mkdir(parents=True, exist_ok=True)
            # UBJSON, the format XGBoost 3 writes by default and the serving container reads.
            (model_dir() / MODEL_FILE).write_bytes(final.save_raw("ubj"))
            output_data_dir().mkdir(parents=True, exist_ok=True)
            summary = {
                "validation": {k.split("-", 1)[1]: v for k, v in metrics.items() if k.startswith("validation-")},
                "train": {k.split("-", 1)[1]: v for k, v in metrics.items() if k.startswith("train-")},
                "train_metric_rows": sampled,
                "best_round": best + 1,
                "rounds_trained": booster.num_boosted_rounds(),
            }
            (output_data_dir() / "metrics.json").write_text(json.dumps(summary, indent=2))
        return {"metrics": metrics, "best_round": best + 1, "rank": rank}


def _best_round(booster: xgb.Booster) -> int:
    attributes = booster.attributes()
    best = attributes.get("best_iteration")
    if best is not None:
        return int(best)
    return booster.num_boosted_rounds() - 1


def main(argv: Sequence[str]) -> None:
    values = hyperparameters_file()
    values.update(parse_command_line(argv))
    train(Hyperparameters.parse(values))


if __name__ == "__main__":
    raise SystemExit(run_job(main))
