"""Training benchmark: the cost of train.py's harness over bare ``xgboost.train``, throughput, and
Parquet against CSV loading. Prints figures; it asserts nothing (speed is not a test).

    .venv/bin/python -m benchmarks.training_benchmark                  # 500k rows, 200 rounds, CPU
    .venv/bin/python -m benchmarks.training_benchmark --rows 10000000 --device cuda   # on a GPU machine

Both variants train the same data with the same parameters and a fixed number of rounds (no early
stopping), one thread (two OpenMP threads are several times slower on 2-core machines), in
alternating order, and the median of ``--repeats`` runs is reported. Times are CPU seconds of this
(single-threaded) process, which other load on a shared machine disturbs far less than wall time.

- bare: ``pandas.read_csv`` -> ``QuantileDMatrix`` -> ``xgboost.train`` (validation evaluated every
  round, as train.py does) -> ``save_model``;
- harness: ``train.py``'s ``train()`` on the same files: validated reading, the same matrices and
  training, plus checkpoints every 10 rounds, the evaluation log, final metrics and the model file.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "training_code"))

import numpy as np
import pandas as pd
import xgboost as xgb

from churn_data import generate_customers, read_training_channel, split_of, write_training_file
from feature_schema import load_schema
from train import Hyperparameters, train

SCHEMA = load_schema()


def prepare(root: Path, rows: int) -> None:
    data = generate_customers(rows, seed=3)
    split = split_of(data["customer_id"], 42, (0.8, 0.2))
    for index, name in enumerate(("train", "validation")):
        part = data[split == index]
        write_training_file(part, root / "csv" / name / "part-00000.csv", SCHEMA)
        write_training_file(part, root / "parquet" / name / "part-00000.parquet", SCHEMA)


def bare(root: Path, hp: Hyperparameters, device: str) -> float:
    started = time.process_time()
    names = list(SCHEMA.model_features)
    arrays = {
        name: pd.read_csv(root / name / "part-00000.csv", header=None, dtype=np.float32).to_numpy()
        for name in ("train", "validation")
    }
    train_x, train_y = np.ascontiguousarray(arrays["train"][:, 1:]), arrays["train"][:, 0]
    valid_x, valid_y = np.ascontiguousarray(arrays["validation"][:, 1:]), arrays["validation"][:, 0]
    dtrain = xgb.QuantileDMatrix(train_x, label=train_y, feature_names=names, max_bin=hp.max_bin, nthread=1)
    dvalid = xgb.QuantileDMatrix(valid_x, label=valid_y, feature_names=names, ref=dtrain, nthread=1)
    booster = xgb.train(
        hp.booster_params(device, 1), dtrain, hp.num_round, evals=[(dvalid, "validation")], verbose_eval=False
    )
    booster.save_model(str(root / "bare-model.ubj"))
    return time.process_time() - started


def harness(root: Path, hp: Hyperparameters, work: Path) -> float:
    os.environ.update(
        {
            "SAGEMAKER_BASE_DIR": str(work),
            "SM_CHANNEL_TRAIN": str(root / "train"),
            "SM_CHANNEL_VALIDATION": str(root / "validation"),
        }
    )
    for stale in (work / "checkpoints").glob("*"):
        stale.unlink()
    started = time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):  # the evaluation log, as CloudWatch would get it
        train(hp)
    return time.process_time() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    if args.device == "cuda":
        os.environ["SM_NUM_GPUS"] = "1"
    hp = Hyperparameters.parse(
        {"num_round": str(args.rounds), "nthread": "1", "early_stopping_rounds": "0", "device": args.device}
    )
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        print(f"Generating {args.rows:,} customers ...", flush=True)
        prepare(root, args.rows)
        train_rows = len(pd.read_csv(root / "csv" / "train" / "part-00000.csv", header=None, usecols=[0]))

        bare_times: list[float] = []
        harness_times: list[float] = []
        for repeat in range(args.repeats):  # alternate the order so drift hurts both alike
            order = ["bare", "harness"] if repeat % 2 == 0 else ["harness", "bare"]
            for name in order:
                if name == "bare":
                    bare_times.append(bare(root / "csv", hp, args.device))
                else:
                    harness_times.append(harness(root / "csv", hp, root / "job"))
        bare_s, harness_s = statistics.median(bare_times), statistics.median(harness_times)

        load = {
            fmt: statistics.median(load_split(root / fmt) for _ in range(args.repeats)) for fmt in ("csv", "parquet")
        }

    iterations = train_rows * args.rounds
    print(
        f"\nTraining benchmark: {train_rows:,} training rows x {args.rounds} rounds, depth 6, device {args.device}, 1 thread, median of {args.repeats}, CPU seconds"
    )
    print(f"  bare xgboost.train (read + train + save): median {bare_s:6.2f} s, min {min(bare_times):6.2f} s")
    print(
        "  train.py harness (same work + validation, checkpoints, log, final metrics): "
        f"median {harness_s:6.2f} s, min {min(harness_times):6.2f} s"
    )
    print(
        f"  harness overhead ratio: {harness_s / bare_s:.3f} of medians, {min(harness_times) / min(bare_times):.3f} "
        "of minimums (goal <= 1.05)"
    )
    print(f"  throughput (harness): {iterations / harness_s / 1e6:.2f} M row-iterations/s")
    print(
        f"  loading the training split with the validating reader: CSV {load['csv']:.3f} s, Parquet {load['parquet']:.3f} s "
        f"(Parquet {load['csv'] / load['parquet']:.1f}x faster)"
    )
    return 0


def load_split(folder: Path) -> float:
    started = time.process_time()
    read_training_channel(folder / "train", SCHEMA, channel="train")
    return time.process_time() - started


if __name__ == "__main__":
    sys.exit(main())
