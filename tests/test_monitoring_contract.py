"""The infrastructure against the runtime's contract (monitoring_code/): the thresholds it mirrors, the
command lines the pipelines run, and the metric names the alarms watch."""

from __future__ import annotations

import json
import re
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from config import MonitoringThresholds, PlatformConfig
from platform_constructs.model_monitoring import ALARMS
from tests.conftest import ROOT, Synthesized
from tests.test_monitoring_stack import monitoring, steps_of, the_pipeline
from tests.test_training_pipeline import all_steps, definition

CONTRACT = (ROOT / "monitoring_code" / "CONTRACT.md").read_text()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat |= _flatten(item, f"{prefix}{key}.")
        return flat
    return {prefix.rstrip("."): value}


def test_mirrored_thresholds_default_to_the_runtimes_defaults() -> None:
    from monitor_config import MonitorConfig

    runtime = _flatten(MonitorConfig().to_json())
    mirrored = _flatten(MonitoringThresholds().job_config())
    assert set(mirrored) <= set(runtime), "every key the infrastructure writes is one monitor.py reads"
    assert {key: runtime[key] for key in mirrored} == mirrored


def test_every_environments_job_config_is_accepted_by_the_runtime(platform_config: PlatformConfig) -> None:
    from monitor_config import parse_config

    for env in platform_config.environments:
        parsed = parse_config(env.monitoring.thresholds.job_config()).to_json()
        assert parsed["retrain_on"] == list(env.monitoring.thresholds.retrain_on)
        assert parsed["drift_threshold"] == env.monitoring.thresholds.drift_threshold


def _concrete(arguments: list[Any]) -> list[str]:
    """The job's arguments with the pipeline's run-time values (the window) filled in."""
    values = {"window_start": "2026-12-01T10:00:00Z", "window_end": "2026-12-01T11:00:00Z"}
    concrete = []
    for argument in arguments:
        if isinstance(argument, dict):
            (name,) = re.findall(r"OutputParameters\['([^']+)'\]", argument["Get"])
            concrete.append(values[name])
        else:
            concrete.append(argument)
    return concrete


def _job(synthesized: Synthesized, env: str) -> dict[str, Any]:
    job: dict[str, Any] = steps_of(the_pipeline(monitoring(synthesized, env), env))["MonitorEndpoint"]["Arguments"]
    return job


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_monitor_py_accepts_the_monitoring_jobs_command_line(synthesized: Synthesized, env: str) -> None:
    from monitor import parse_args

    job = _job(synthesized, env)
    arguments = _concrete(job["AppSpecification"]["ContainerArguments"])
    parsed = parse_args(arguments)
    given = dict(zip(arguments[::2], arguments[1::2], strict=True))
    for flag, value in given.items():  # every argument the job passes lands where monitor.py reads it
        assert str(getattr(parsed, flag.removeprefix("--").replace("-", "_"))) == value, flag
    assert str(parsed.capture) == "/opt/ml/processing/input/capture"
    assert str(parsed.labelled_capture) == "/opt/ml/processing/input/labelled/capture"
    assert str(parsed.ground_truth) == "/opt/ml/processing/input/labelled/ground-truth"
    assert str(parsed.baselines) == "/opt/ml/processing/input/baselines"
    assert str(parsed.models) == "/opt/ml/processing/input/models"
    assert parsed.endpoint == f"churn-{env}"
    assert (parsed.window_start, parsed.window_end) == ("2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z")
    # Every folder it reads is inside one of the job's inputs: the labelled capture and the ground truth
    # are the two halves of the one "labelled" manifest input.
    local = {i["InputName"]: i["S3Input"]["LocalPath"] for i in job["ProcessingInputs"]}
    assert str(parsed.labelled_capture).startswith(local["labelled"] + "/")
    assert str(parsed.ground_truth).startswith(local["labelled"] + "/")
    assert str(parsed.capture) == local["capture"]
    assert str(parsed.config).startswith(local["config"] + "/")


def _reroot(path: str, root: Path) -> Path:
    return root / path.removeprefix("/")


def _copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, dirs_exist_ok=True)


def test_monitor_py_runs_on_its_inputs_as_the_job_downloads_them(
    synthesized: Synthesized, platform_config: PlatformConfig, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """prod's job command line, run locally with its inputs laid out as SageMaker downloads them: the
    manifests' files at LocalPath + their key relative to the manifest's prefix (``s3://<capture>/<endpoint>/``,
    see functions/monitoring_resolver.py), each variant's copied baselines with the resolver's
    ``package.json``, each variant's ``model.tar.gz`` in its own input."""
    from scripts import local_monitoring
    from scripts.local_monitoring import Scenario
    from stacks.monitoring_stack import ground_truth_uri
    from tests.monitoring_support import monitoring_setup

    env = "prod"
    endpoint = f"churn-{env}"
    setup = monitoring_setup(tmp_path_factory)
    root = tmp_path_factory.mktemp("job")
    job = _job(synthesized, env)
    local = {i["InputName"]: _reroot(i["S3Input"]["LocalPath"], root) for i in job["ProcessingInputs"]}
    variants = [name.removeprefix("model-") for name in local if name.startswith("model-")]
    assert variants == ["Champion", "Shadow"]
    models = dict.fromkeys(variants, setup.model_dir)
    start = local_monitoring.WINDOW_START
    delay = timedelta(hours=platform_config.environment(env).monitoring.label_delay_hours)
    window = local_monitoring.replay(
        root / "replay-window", models=models, scenario=Scenario("now"), records=2000, seed=808, endpoint=endpoint
    )
    earlier = local_monitoring.replay(
        root / "replay-earlier",
        models=models,
        scenario=Scenario("earlier"),
        records=2400,
        seed=809,
        endpoint=endpoint,
        start=start - delay,
    )
    # The serving stack captures to s3://<capture>/<endpoint>/capture, under which SageMaker writes
    # <endpoint>/<Variant>/yyyy/mm/dd/hh/; ground truth is under s3://<capture>/<endpoint>/ground-truth/.
    truth_folder = ground_truth_uri("bucket", endpoint).removeprefix(f"s3://bucket/{endpoint}/").strip("/")
    _copy_tree(window.capture, local["capture"] / "capture")
    _copy_tree(earlier.capture, local["labelled"] / "capture")
    _copy_tree(earlier.ground_truth, local["labelled"] / truth_folder)
    for variant in variants:
        _copy_tree(setup.monitored.baselines / "Champion", local["baselines"] / variant)
        (local["baselines"] / variant / "package.json").write_text(
            '{"package_arn": "arn:...:model-package/churn-prod/7"}'
        )
        _copy_tree(setup.monitored.models / "Champion", local[f"model-{variant}"])
    arguments = [str(a) for a in _concrete(job["AppSpecification"]["ContainerArguments"])]
    for index, argument in enumerate(arguments):
        if argument.startswith("/opt/ml/processing/"):
            arguments[index] = str(_reroot(argument, root))
    config = Path(arguments[arguments.index("--config") + 1])
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps(platform_config.environment(env).monitoring.thresholds.job_config()))
    output = Path(arguments[arguments.index("--output") + 1])
    arguments += ["--failure-file", str(root / "failure")]

    code, summary, printed = local_monitoring.run_monitor(arguments)
    assert code == 0, (root / "failure").read_text() if (root / "failure").is_file() else printed
    assert summary is not None
    assert summary["labels"] == {"matched_in": "labelled_capture", "records": 2400, "malformed": 0}
    assert summary["ground_truth"] == {"records": 2400, "duplicates": 0, "malformed": 0, "unmatched": 0, "unusable": 0}
    assert sum(summary["variants"][v]["records"] for v in variants) == 2000
    assert sum(summary["variants"][v]["labelled_records"] for v in variants) == 2400
    assert summary["variants"]["Champion"]["checks"]["model_quality"].startswith("evaluated")
    assert summary["variants"]["Champion"]["checks"]["attribution_drift"].startswith("evaluated")
    assert summary["status"] == "ok"
    assert (output / "Shadow" / "statistics.json").is_file()

    # No labelled data: the resolver points the labelled input at a note; the run goes on without labels.
    shutil.rmtree(local["labelled"])
    local["labelled"].mkdir()
    (local["labelled"] / "NO_LABELLED_DATA.txt").write_text("No capture or ground truth for the labelled window.\n")
    code, summary, printed = local_monitoring.run_monitor(arguments)
    assert code == 0, printed
    assert summary is not None
    assert summary["labels"]["matched_in"] == "capture"
    assert summary["ground_truth"]["records"] == 0
    assert summary["variants"]["Champion"]["checks"]["model_quality"].startswith("skipped: 0 labelled records")
    assert summary["variants"]["Champion"]["checks"]["data_drift"] == "evaluated"


def test_baseline_py_accepts_the_training_pipelines_command_line(
    synthesized: Synthesized, monkeypatch: pytest.MonkeyPatch
) -> None:
    import baseline
    from monitor_config import MonitorConfig

    steps = {s["Name"]: s for s in all_steps(definition(synthesized, "staging")["Steps"])}
    arguments = list(steps["MonitoringBaselines"]["Arguments"]["AppSpecification"]["ContainerArguments"])
    seen: dict[str, Any] = {}

    def load_config(path: Any) -> MonitorConfig:
        seen["config_path"] = path
        return MonitorConfig()

    def build(**kwargs: Any) -> dict[str, Any]:
        seen.update(kwargs)
        raise SystemExit(0)  # stop before reading any data: the command line is what is checked

    monkeypatch.setattr(baseline, "load_config", load_config)
    monkeypatch.setattr(baseline, "build", build)
    with pytest.raises(SystemExit):
        baseline.main(arguments)
    assert str(seen["output"]) == "/opt/ml/processing/output/baselines"
    assert str(seen["evaluation"]) == "/opt/ml/processing/input/evaluation"
    assert str(seen["config_path"]).startswith("/opt/ml/processing/input/config/")


def test_the_alarms_watch_metrics_the_runtime_publishes() -> None:
    for kind in ALARMS:
        assert f"`{kind.metric}`" in CONTRACT, kind.metric
    for name in ("records_analyzed", "labelled_records", "auc", "challenger_auc_difference"):  # on the dashboard
        assert f"`{name}`" in CONTRACT
