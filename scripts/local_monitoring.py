"""Monitor locally, with no AWS account: replay traffic into SageMaker's data-capture format, then run
``monitoring_code/monitor.py`` on it exactly as the monitoring job does.

A replay generates customers with the training data's generator, scores them with the serving
code (``inference_code/inference.py``: decode, predict, encode, as the endpoint answers), writes
each request and answer as a capture record under ``<endpoint>/<variant>/yyyy/mm/dd/hh/`` and the
labels as Model Monitor ground truth. Scenarios change the traffic the way production goes wrong:

- ``clean``: the training distribution (no violation expected);
- ``shifted``: one feature scaled (for example x1.3): a drift violation naming it;
- ``flipped``: a share of the labels flipped: a model-quality violation;
- ``segment``: scores shifted for one segment of a protected attribute: a bias violation;
- ``corrupted``: broken records (missing, out-of-range, wrongly typed values, short rows, broken
  lines): integrity violations, and no retraining.

    python -m scripts.local_monitoring                   # clean and shifted replays on the local model
    python -m scripts.local_monitoring --scenario corrupted --records 5000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TRAINING_CODE = ROOT / "training_code"
INFERENCE_CODE = ROOT / "inference_code"
MONITORING_CODE = ROOT / "monitoring_code"
DEFAULT_RUN_DIR = ROOT / ".local" / "monitoring"
DEFAULT_TRAINING_DIR = ROOT / ".local" / "training"
ENDPOINT = "churn-local"
WINDOW_START = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
WINDOW = timedelta(hours=1)


@contextlib.contextmanager
def runtime_code() -> Iterator[None]:
    """The runtime folders on the import path, as the SageMaker containers have them."""
    added = [str(p) for p in (TRAINING_CODE, INFERENCE_CODE, MONITORING_CODE) if str(p) not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for path in added:
            sys.path.remove(path)


@dataclass(frozen=True)
class Scenario:
    """How a replay departs from the training distribution."""

    name: str
    shift: tuple[tuple[str, float], ...] = ()  # (feature, factor)
    flip_labels: float = 0.0  # share of labels flipped
    segment_shift: tuple[str, float, float] | None = None  # (attribute, segment value, added to the score)
    corrupt: float = 0.0  # share of records broken

    def describe(self) -> str:
        parts = [f"{name} x{factor:g}" for name, factor in self.shift]
        if self.flip_labels:
            parts.append(f"{self.flip_labels:.0%} of labels flipped")
        if self.segment_shift:
            attribute, value, delta = self.segment_shift
            parts.append(f"scores {delta:+g} where {attribute} = {value:g}")
        if self.corrupt:
            parts.append(f"{self.corrupt:.0%} of records corrupted")
        return ", ".join(parts) or "the training distribution"


def default_scenarios() -> dict[str, Scenario]:
    """The five replays, on features the schema picks (no feature name is written here)."""
    with runtime_code():
        from feature_schema import load_schema

        schema = load_schema()
    fractional = next(c.name for c in schema.features if c.used_by_model and c.type == "fractional")
    protected = schema.protected_attributes[0] if schema.protected_attributes else None
    scenarios = {
        "clean": Scenario("clean"),
        "shifted": Scenario("shifted", shift=((fractional, 1.3),)),
        "flipped": Scenario("flipped", flip_labels=0.2),
        "corrupted": Scenario("corrupted", corrupt=0.1),
    }
    if protected is not None:
        allowed = schema.column(protected).allowed or (0.0, 1.0)
        scenarios["segment"] = Scenario("segment", segment_shift=(protected, float(allowed[-1]), 0.3))
    return scenarios


@dataclass
class Replay:
    root: Path
    capture: Path
    ground_truth: Path
    records: dict[str, int] = field(default_factory=dict)  # per variant
    corrupted: int = 0


def _corrupt(row: list[str], kind: int, index: int, specs: Any) -> str:
    """One broken request (kinds 0-3; kind 4, a truncated line, is written by the caller): an upstream
    bug breaks one field, ``index``."""
    spec = specs[index]
    broken = list(row)
    if kind == 0:  # a value missing
        broken[index] = ""
    elif kind == 1:  # out of range or not an allowed value
        if spec.allowed is not None:
            broken[index] = f"{max(spec.allowed) + 7:g}"
        else:
            broken[index] = f"{(spec.minimum if spec.minimum is not None else 0) - 5:g}"
    elif kind == 2:  # not a number
        broken[index] = "n/a"
    elif kind == 3:  # a value short
        broken = broken[:-1]
    return ",".join(broken)


def replay(
    root: Path,
    *,
    models: dict[str, Path],
    scenario: Scenario,
    records: int,
    seed: int,
    weights: dict[str, float] | None = None,
    endpoint: str = ENDPOINT,
    start: datetime = WINDOW_START,
    labelled: float = 1.0,
) -> Replay:
    """Write one window of capture and ground truth under ``root`` (replacing what was there).

    ``models`` maps each variant to a folder holding its ``xgboost-model``; ``weights`` splits the
    traffic between them (default: equal).
    """
    with runtime_code():
        import inference
        from capture_format import capture_record, ground_truth_record, write_capture, write_jsonl_by_hour
        from churn_data import generate_customers
        from data_quality import feature_specs
        from feature_schema import load_schema

        schema = load_schema()
        names = list(schema.model_features)
        specs = feature_specs(schema)
        rng = np.random.default_rng([seed, 90210])
        customers = generate_customers(records, seed=seed)
        frame = customers[names].astype(np.float64)
        for feature, factor in scenario.shift:
            frame[feature] = frame[feature] * factor
            if schema.column(feature).type == "integral":
                frame[feature] = frame[feature].round()
        labels = customers[schema.label.name].to_numpy().astype(int)
        if scenario.flip_labels:
            flip = rng.random(records) < scenario.flip_labels
            labels = np.where(flip, 1 - labels, labels)
        variants = list(models)
        shares = np.array([(weights or {}).get(v, 1.0) for v in variants], dtype=np.float64)
        route = rng.choice(len(variants), size=records, p=shares / shares.sum())
        texts = [",".join(f"{v:.10g}" for v in row) for row in frame.to_numpy()]
        scores = np.empty(records)
        for number, variant in enumerate(variants):
            chosen = np.flatnonzero(route == number)
            if not len(chosen):
                continue
            model = inference.model_fn(models[variant])
            body = "\n".join(texts[i] for i in chosen).encode()
            status, payload, _ = inference.handle(body, "text/csv", "text/csv", model, "text/csv")
            if status != 200:
                raise RuntimeError(f"the serving code refused the replay ({status}): {payload[:200]!r}")
            scores[chosen] = np.array(payload.decode().split(), dtype=np.float64)
        if scenario.segment_shift:
            attribute, value, delta = scenario.segment_shift
            segment = frame[attribute].to_numpy() == value
            scores = np.where(segment, np.clip(scores + delta, 0.0, 1.0), scores)
        broken = np.flatnonzero(rng.random(records) < scenario.corrupt) if scenario.corrupt else np.empty(0, int)
        broken_kind = {int(i): k % 5 for k, i in enumerate(broken)}
        broken_field = int(rng.integers(len(names)))
        capture, truth = root / "capture", root / "ground-truth"
        for folder in (capture, truth):
            if folder.exists():
                shutil.rmtree(folder)
        step = WINDOW / max(records, 1)
        by_variant: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
        lines: dict[str, list[str]] = {v: [] for v in variants}  # kind 4: lines that are not JSON at all
        truth_records = []
        for i in range(records):
            moment = start + step * i
            inference_id = f"{scenario.name}-{seed}-{i:07d}"
            kind = broken_kind.get(i)
            row = texts[i] if kind is None else _corrupt(texts[i].split(","), kind, broken_field, specs)
            record = capture_record(
                input_data=row,
                output_data=f"{scores[i]:.9g}\n",
                event_id=f"{rng.integers(2**63):016x}-{i:07d}",
                inference_id=inference_id,
                inference_time=moment,
            )
            variant = variants[route[i]]
            if kind == 4:
                lines[variant].append(json.dumps(record)[: 40 + i % 60])  # a truncated write
            else:
                by_variant[variant].append(record)
            if rng.random() < labelled:
                truth_records.append((moment, ground_truth_record(inference_id, str(labels[i]))))
        result = Replay(root, capture, truth, corrupted=len(broken))
        for variant in variants:
            paths = write_capture(capture, endpoint, variant, by_variant[variant], f"replay-{scenario.name}-{seed}")
            if lines[variant]:
                with paths[-1].open("a", encoding="utf-8") as handle:
                    handle.write("\n".join(lines[variant]) + "\n")
            result.records[variant] = int((route == variants.index(variant)).sum())
        times = {id(r): m for m, r in truth_records}
        write_jsonl_by_hour(
            truth, [r for _, r in truth_records], lambda r: times[id(r)], f"labels-{scenario.name}-{seed}"
        )
    return result


# --- baselines and the monitor --------------------------------------------------------------------


@dataclass(frozen=True)
class Monitored:
    """What a local monitoring run needs per variant: its baseline folder and model folder."""

    baselines: Path
    models: Path


def prepare(
    root: Path,
    *,
    model_archive: Path,
    baseline_data: Path,
    test_data: Path,
    evaluation: Path | None,
    variants: tuple[str, ...] = ("Champion",),
    config: Path | None = None,
    sample_size: int = 100_000,
) -> Monitored:
    """Run baseline.py for one model version and lay it out as the monitoring job receives it:
    ``baselines/<Variant>/`` and ``models/<Variant>/model.tar.gz`` for every variant serving it."""
    with runtime_code():
        import baseline
        from monitor_config import load_config

        output = root / "baseline-output"
        if output.exists():
            shutil.rmtree(output)
        model_input = root / "model-input"
        model_input.mkdir(parents=True, exist_ok=True)
        shutil.copy(model_archive, model_input / "model.tar.gz")
        baseline.build(
            baseline_data=baseline_data,
            model=model_input,
            test_data=test_data,
            evaluation=evaluation,
            output=output,
            config=load_config(config),
            sample_size=sample_size,
            seed=0,
        )
    monitored = Monitored(root / "baselines", root / "models")
    for variant in variants:
        for folder in (monitored.baselines / variant, monitored.models / variant):
            if folder.exists():
                shutil.rmtree(folder)
        shutil.copytree(output, monitored.baselines / variant)
        if evaluation is not None:
            shutil.copy(evaluation, monitored.baselines / variant / "evaluation.json")
        (monitored.models / variant).mkdir(parents=True)
        shutil.copy(model_archive, monitored.models / variant / "model.tar.gz")
    return monitored


def monitor_arguments(
    replayed: Replay,
    monitored: Monitored,
    output: Path,
    *,
    config: Path | None = None,
    endpoint: str = ENDPOINT,
    labelled: Replay | None = None,
) -> list[str]:
    """The monitor.py command line the job would run for this replay. ``labelled``: a replay of the
    window one label delay back (``start=WINDOW_START - label delay``), whose capture and ground truth
    the job then judges model quality on, as the platform backend passes them."""
    truth = replayed.ground_truth if labelled is None else labelled.ground_truth
    arguments = [
        "--capture", str(replayed.capture),
        *(["--labelled-capture", str(labelled.capture)] if labelled is not None else []),
        "--ground-truth", str(truth),
        "--baselines", str(monitored.baselines),
        "--models", str(monitored.models),
        "--endpoint", endpoint,
        "--window-start", WINDOW_START.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "--window-end", (WINDOW_START + WINDOW).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "--output", str(output),
        "--failure-file", str(output / "failure"),
    ]  # fmt: skip
    if config is not None:
        arguments += ["--config", str(config)]
    return arguments


def run_monitor(arguments: list[str]) -> tuple[int, dict[str, Any] | None, str]:
    """monitor.py's entry point in this process: (exit code, summary.json or None, printed lines)."""
    with runtime_code():
        import io

        import monitor
        from monitoring_env import run_job

        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = run_job(monitor.main, arguments)
    output = Path(arguments[arguments.index("--output") + 1])
    summary_path = output / "summary.json"
    summary = json.loads(summary_path.read_text()) if code == 0 and summary_path.is_file() else None
    return code, summary, printed.getvalue()


def unpack(archive: Path, folder: Path) -> Path:
    """model.tar.gz -> folder/xgboost-model (what the serving code loads)."""
    from scripts.local_serving import unpack_model

    folder.mkdir(parents=True, exist_ok=True)
    return unpack_model(archive, folder)


def demo(
    training_dir: Path = DEFAULT_TRAINING_DIR,
    run_dir: Path = DEFAULT_RUN_DIR,
    *,
    scenarios: tuple[str, ...] = ("clean", "shifted"),
    records: int = 5000,
    seed: int = 2027,
) -> str:
    """Baselines of the locally trained model, then one monitoring run per scenario; the summaries."""
    archive = training_dir / "train" / "output" / "model.tar.gz"
    splits = training_dir / "preprocess" / "processing" / "output"
    evaluation = training_dir / "evaluate" / "processing" / "output" / "evaluation" / "evaluation.json"
    if not archive.is_file():
        raise FileNotFoundError(f"no model at {archive}; train one first: python -m scripts.local_training")
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "monitoring.json"
    config.write_text(json.dumps({"attribution": {"sample_size": 1000}}))  # a quick demo: a smaller SHAP sample
    monitored = prepare(
        run_dir,
        model_archive=archive,
        baseline_data=splits / "baseline",
        test_data=splits / "test",
        evaluation=evaluation if evaluation.is_file() else None,
        config=config,
        sample_size=50_000,
    )
    model_dir = unpack(archive, run_dir / "serving-model")
    available = default_scenarios()
    lines = []
    for name in scenarios:
        scenario = available[name]
        replayed = replay(run_dir / name, models={"Champion": model_dir}, scenario=scenario, records=records, seed=seed)
        output = run_dir / name / "report"
        code, summary, printed = run_monitor(monitor_arguments(replayed, monitored, output, config=config))
        if code != 0 or summary is None:
            failure = (output / "failure").read_text() if (output / "failure").is_file() else printed
            raise RuntimeError(f"monitor.py exited {code} on the {name} replay: {failure}")
        lines.append(f"{name} replay ({scenario.describe()}), {records} records:")
        lines.extend("  " + line for line in printed.strip().splitlines()[1:])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--training-dir", type=Path, default=DEFAULT_TRAINING_DIR, help="the local training run")
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    parser.add_argument(
        "--scenario", action="append", choices=sorted(default_scenarios()), help="default: clean, shifted"
    )
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=2027)
    args = parser.parse_args(argv)
    if not 100 <= args.records <= 2_000_000:
        parser.error(f"--records {args.records} must be between 100 and 2000000")
    try:
        print(
            demo(
                args.training_dir,
                args.run_dir,
                scenarios=tuple(args.scenario or ("clean", "shifted")),
                records=args.records,
                seed=args.seed,
            )
        )
    except (FileNotFoundError, RuntimeError) as error:
        print(f"Local monitoring failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
