"""Monitoring benchmark: one monitoring run over 1 million captured records with 10 features.

Builds what the job would receive (data capture of a Champion/Challenger endpoint in SageMaker's
layout; the capture of the same hour a day earlier, one label delay back, with ground truth for
every request of it; each variant's baselines and model), then runs
``monitoring_code/monitor.py`` as its own process, as the job runs it, and prints its wall time,
records per second and the process's peak resident memory (the whole process, from the kernel's
accounting: ``getrusage(RUSAGE_CHILDREN).ru_maxrss``). The issue's target: at most 60 s and 2 GiB
on the 2-core development machine. Nothing is asserted: the figures go into the README.

    python -m benchmarks.monitoring_benchmark                     # 1,000,000 records (+ 1,000,000 labelled)
    python -m benchmarks.monitoring_benchmark --labels-on-window  # 1,000,000 records, labelled themselves
    python -m benchmarks.monitoring_benchmark --records 200000 --keep .local/benchmark-monitoring
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MONITOR = ROOT / "monitoring_code" / "monitor.py"
VARIANTS = {"Champion": 0.9, "Challenger": 0.1}
RECORD = (
    '{{"captureData":{{"endpointInput":{{"observedContentType":"text/csv","mode":"INPUT","data":"{row}",'
    '"encoding":"CSV"}},"endpointOutput":{{"observedContentType":"text/csv; charset=utf-8","mode":"OUTPUT",'
    '"data":"{score:.9g}\\n","encoding":"CSV"}}}},"eventMetadata":{{"eventId":"{event}","inferenceId":"{id}",'
    '"inferenceTime":"{date}T10:{minute:02d}:{second:02d}Z"}},"eventVersion":"0"}}'
)
RECORDS_PER_FILE = 50_000


def build_inputs(work: Path, records: int, seed: int, *, labels_on_window: bool = False) -> list[str]:
    """Capture, labelled capture, ground truth, baselines and models under ``work``; the monitor's command line."""
    sys.path[:0] = [str(ROOT / "training_code"), str(ROOT / "monitoring_code")]
    import xgboost as xgb

    import baseline
    from churn_data import generate_customers, write_training_file
    from feature_schema import load_schema
    from monitor_config import MonitorConfig

    schema = load_schema()
    names = list(schema.model_features)
    train = generate_customers(50_000, seed=7)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "nthread": 1},
        xgb.DMatrix(train[names].to_numpy(np.float32), label=train["churned"], feature_names=names),
        num_boost_round=200,
    )
    model = work / "model"
    model.mkdir(parents=True)
    (model / "xgboost-model").write_bytes(booster.save_raw("ubj"))
    with tarfile.open(model / "model.tar.gz", "w:gz") as archive:
        archive.add(model / "xgboost-model", arcname="xgboost-model")
    (model / "xgboost-model").unlink()
    (work / "splits" / "baseline").mkdir(parents=True)
    train[names].to_csv(work / "splits" / "baseline" / "baseline.csv", index=False)
    write_training_file(generate_customers(20_000, seed=8), work / "splits" / "test" / "test.csv", schema)
    baseline.build(
        baseline_data=work / "splits" / "baseline",
        model=model,
        test_data=work / "splits" / "test",
        evaluation=None,
        output=work / "baseline-output",
        config=MonitorConfig(),
        sample_size=100_000,
        seed=0,
    )
    for variant in VARIANTS:
        shutil.copytree(work / "baseline-output", work / "baselines" / variant)
        (work / "models" / variant).mkdir(parents=True)
        shutil.copy(model / "model.tar.gz", work / "models" / variant / "model.tar.gz")

    def write_window(root: Path, date: str, records: int, seed: int, prefix: str, *, labelled: bool) -> None:
        """One hour of capture of both variants under ``root``; with ground truth for all of it when labelled."""
        traffic = generate_customers(records, seed=seed)
        scores = booster.inplace_predict(traffic[names].to_numpy(np.float32))
        rows = traffic[names].to_csv(header=False, index=False, float_format="%.10g").splitlines()
        rng = np.random.default_rng(seed)
        route = rng.choice(len(VARIANTS), size=records, p=list(VARIANTS.values()))
        for number, variant in enumerate(VARIANTS):
            folder = root / "churn-bench" / variant / Path(*date.split("-")) / "10"
            folder.mkdir(parents=True)
            chosen = np.flatnonzero(route == number)
            for start in range(0, len(chosen), RECORDS_PER_FILE):
                part = chosen[start : start + RECORDS_PER_FILE]
                lines = [
                    RECORD.format(
                        row=rows[i],
                        score=scores[i],
                        event=f"{i:032x}",
                        id=f"{prefix}-{i}",
                        date=date,
                        minute=(i // 60) % 60,
                        second=i % 60,
                    )
                    for i in part
                ]
                (folder / f"{variant}-{start:08d}.jsonl").write_text("\n".join(lines) + "\n")
        if not labelled:
            return
        labels = traffic[schema.label.name].to_numpy()
        truth = work / "ground-truth" / "2026" / "12" / "01" / "11"
        truth.mkdir(parents=True, exist_ok=True)
        with (truth / f"labels-{prefix}.jsonl").open("w") as handle:
            for i in range(records):
                handle.write(
                    f'{{"groundTruthData":{{"data":"{labels[i]}","encoding":"CSV"}},'
                    f'"eventMetadata":{{"eventId":"{prefix}-{i}"}},"eventVersion":"0"}}\n'
                )

    # As the platform backend runs it, the labels are those of the window one label delay (a day) back,
    # read with its capture; the window's own labels arrive tomorrow. ``labels_on_window``: the labels
    # are the window's own (a run without a labelled capture).
    write_window(work / "capture", "2026-12-01", records, seed, "req", labelled=labels_on_window)
    if not labels_on_window:
        write_window(work / "labelled" / "capture", "2026-11-30", records, seed + 1, "early", labelled=True)
    return [
        "--capture", str(work / "capture"),
        "--labelled-capture", str(work / "labelled" / "capture"),
        "--ground-truth", str(work / "ground-truth"),
        "--baselines", str(work / "baselines"),
        "--models", str(work / "models"),
        "--endpoint", "churn-bench",
        "--window-start", "2026-12-01T10:00:00Z",
        "--window-end", "2026-12-01T11:00:00Z",
        "--output", str(work / "output"),
        "--failure-file", str(work / "failure"),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--labels-on-window",
        action="store_true",
        help="label the window's own records instead of a labelled capture one day back (one capture pass)",
    )
    parser.add_argument(
        "--keep", type=Path, help="build the inputs in this folder and keep them (default: a temporary one)"
    )
    args = parser.parse_args(argv)
    if args.records < 1000:
        parser.error(f"--records {args.records}: use at least 1000")
    work = args.keep or Path(tempfile.mkdtemp(prefix="monitoring-benchmark-"))
    if work.exists() and any(work.iterdir()):
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        arguments = build_inputs(work, args.records, args.seed, labels_on_window=args.labels_on_window)
        size = sum(p.stat().st_size for p in (work / "capture").rglob("*.jsonl"))
        labelled = (
            "ground truth for every record of the window (no labelled capture)"
            if args.labels_on_window
            else f"a labelled capture of {args.records:,} records one day back with ground truth for every one"
        )
        print(
            f"inputs: {args.records:,} captured records ({size / 2**20:,.0f} MiB of capture JSON lines, "
            f"{len(VARIANTS)} variants {'/'.join(f'{w:.0%}' for w in VARIANTS.values())}), {labelled}, "
            f"built in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        environment = {
            **os.environ,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
            "PYTHONPATH": str(ROOT / "training_code"),  # the feature schema, which the job's bundle holds
        }
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, str(MONITOR), *arguments], env=environment, capture_output=True, text=True, check=False
        )
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux reports KiB
        if result.returncode != 0:
            print(result.stdout + result.stderr, file=sys.stderr)
            return 1
        summary = json.loads((work / "output" / "summary.json").read_text())
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in summary["seconds"].items() if k != "total")
        extra = "" if args.labels_on_window else f" (+ {args.records:,} in the labelled capture)"
        print(
            f"monitor.py: {seconds:.1f} s wall for {args.records:,} records{extra} = "
            f"{args.records / seconds:,.0f} window records/s"
        )
        print(f"peak memory (the monitor process's max RSS): {peak / 2**20:,.0f} MiB")
        print(f"phases: {phases}; interpreter start and imports: {seconds - summary['seconds']['total']:.1f} s")
        print(f"target: <= 60 s and <= 2048 MiB: {'met' if seconds <= 60 and peak <= 2 * 2**30 else 'NOT met'}")
        print(result.stdout.strip())
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
