"""Processing step: validate raw churn data and split it for training, evaluation and monitoring.

Reads every CSV or Parquet file (with a header) under ``/opt/ml/processing/input/raw``, validates it
against the feature schema, and writes under ``/opt/ml/processing/output``:

- ``train/part-NNNNN.csv`` and ``validation/part-NNNNN.csv``: the training layout (no header, label
  first), split into ``--shards`` files so that ``ShardedByS3Key`` gives every training instance
  its own share;
- ``test/test.csv``: the held-out split for evaluate.py;
- ``baseline/baseline.csv``: the model features of the training split, with a header, for the
  Model Monitor data-quality baseline (it has the layout captured requests have, plus names).

The split is a seeded hash of the customer id, so a customer never appears in two splits.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from churn_data import read_raw, shard_of, split_of, write_training_file
from feature_schema import load_schema
from training_env import ConfigurationError, DataError, processing_dir, run_job

SPLITS = ("train", "validation", "test")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input-dir", type=Path, default=None, help="default: /opt/ml/processing/input/raw")
    parser.add_argument("--output-dir", type=Path, default=None, help="default: /opt/ml/processing/output")
    parser.add_argument("--seed", type=int, default=42, help="salt of the split hash")
    parser.add_argument("--train-fraction", type=float, default=0.7)
    parser.add_argument("--validation-fraction", type=float, default=0.15)
    parser.add_argument("--shards", type=int, default=2, help="files per training split (>= training instances)")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv", help="format of the training files")
    args = parser.parse_args(list(argv))
    test_fraction = 1 - args.train_fraction - args.validation_fraction
    if not (0 < args.train_fraction < 1 and 0 < args.validation_fraction < 1 and test_fraction > 0):
        raise ConfigurationError(
            f"--train-fraction {args.train_fraction} and --validation-fraction {args.validation_fraction} must be "
            "between 0 and 1 and leave a test share (their sum below 1)"
        )
    if not 1 <= args.shards <= 1000:
        raise ConfigurationError(f"--shards {args.shards} must be between 1 and 1000")
    return args


def main(argv: Sequence[str]) -> None:
    args = parse_args(argv)
    schema = load_schema()
    input_dir = args.input_dir or processing_dir("input", "raw")
    output_dir = args.output_dir or processing_dir("output")

    raw = read_raw(input_dir, schema)
    split = split_of(raw[schema.record_identifier.name], args.seed, (args.train_fraction, args.validation_fraction))
    suffix = ".parquet" if args.format == "parquet" else ".csv"
    summary: dict[str, dict[str, float]] = {}
    for index, name in enumerate(SPLITS):
        part = raw[split == index]
        if part.empty:
            raise DataError(
                f"the {name} split is empty ({len(raw)} rows in total); provide more customers or change the fractions"
            )
        summary[name] = {"rows": len(part), "churn_rate": round(float(part[schema.label.name].mean()), 4)}
        if name == "test":
            write_training_file(part, output_dir / "test" / f"test{suffix}", schema)
            continue
        shards = shard_of(part[schema.record_identifier.name], args.shards)
        for shard in range(args.shards):
            rows = part[shards == shard]
            write_training_file(rows, output_dir / name / f"part-{shard:05d}{suffix}", schema)

    baseline = raw[split == 0][list(schema.model_features)]
    (output_dir / "baseline").mkdir(parents=True, exist_ok=True)
    baseline.to_csv(output_dir / "baseline" / "baseline.csv", header=True, index=False)
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    for name, stats in summary.items():
        print(f"{name}: {int(stats['rows'])} rows, churn rate {stats['churn_rate']:.3f}", flush=True)


if __name__ == "__main__":
    raise SystemExit(run_job(main))
