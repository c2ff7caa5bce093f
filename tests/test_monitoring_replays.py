"""End to end, no AWS: replayed traffic in SageMaker's capture format through monitor.py's entry point.

The five replays of the issue, each judged as the monitoring job judges it:
(a) the training distribution: no violation; (b) one feature x1.3: a drift violation naming it;
(c) 20 % of labels flipped: a model-quality violation; (d) scores shifted for one segment of the
protected attribute: a bias violation; (e) corrupted records: integrity violations and no retraining.
Then the false-alarm bound over 20 seeds of (a), champion vs challenger, and the job's exit codes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from scripts import local_monitoring
from scripts.local_monitoring import Scenario
from tests.monitoring_support import MonitoringSetup, monitoring_setup

ROOT = Path(__file__).resolve().parent.parent
RECORDS = 4000
LABEL_DELAY = timedelta(hours=24)  # monitoring.label_delay_hours' default


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> MonitoringSetup:
    return monitoring_setup(tmp_path_factory)


def monitor(
    setup: MonitoringSetup, folder: Path, scenario: Scenario, *, seed: int = 101, records: int = RECORDS, **options: Any
) -> tuple[dict[str, Any], Path]:
    """Replay ``scenario`` into ``folder`` and run monitor.py's main on it as the job does; (summary, output)."""
    replayed = local_monitoring.replay(
        folder, models={"Champion": setup.model_dir}, scenario=scenario, records=records, seed=seed, **options
    )
    output = folder / "output"
    code, summary, printed = local_monitoring.run_monitor(
        local_monitoring.monitor_arguments(replayed, setup.monitored, output)
    )
    assert code == 0, (output / "failure").read_text() if (output / "failure").exists() else printed
    assert summary is not None
    return summary, output


def violations(output: Path, variant: str = "Champion") -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads((output / variant / "constraint_violations.json").read_text())[
        "violations"
    ]
    return found


def metric(output: Path, name: str, variant: str | None = "Champion") -> float:
    document = json.loads((output / "metrics.json").read_text())
    values = [
        m["value"] for m in document["metrics"] if m["name"] == name and m["dimensions"].get("Variant") == variant
    ]
    assert len(values) == 1, f"{name} for {variant}: {values}"
    return float(values[0])


def test_a_traffic_from_the_training_distribution_raises_no_violation(setup, tmp_path) -> None:
    summary, output = monitor(setup, tmp_path, Scenario("clean"))
    champion = summary["variants"]["Champion"]
    assert summary["status"] == "ok"
    assert champion["violations"] == dict.fromkeys(champion["violations"], 0)
    assert all(status.startswith("evaluated") for status in champion["checks"].values()), champion["checks"]
    assert champion["records"] == RECORDS
    assert champion["labelled_records"] == RECORDS
    assert summary["retrain_recommended"] is False
    assert summary["actions"] == []
    assert violations(output) == []
    assert metric(output, "records_analyzed") == RECORDS
    assert metric(output, "data_drift_violations") == 0
    assert metric(output, "retrain_recommended", variant=None) == 0


def test_b_one_shifted_feature_is_a_drift_violation_naming_it(setup, tmp_path) -> None:
    shifted = "monthly_charges"
    summary, output = monitor(setup, tmp_path, Scenario("shifted", shift=((shifted, 1.3),)))
    champion = summary["variants"]["Champion"]
    assert champion["drifted_features"] == [shifted]
    (violation,) = [v for v in violations(output) if v["constraint_check_type"] == "baseline_drift_check"]
    assert violation["feature_name"] == shifted
    assert violation["monitoring_type"] == "DataQuality"
    assert champion["violations"]["data_integrity"] == 0
    assert summary["retrain_recommended"] is True
    assert [a["action"] for a in summary["actions"]] == ["notify", "retrain"]
    assert metric(output, f"feature_baseline_drift_{shifted}") > 0.1
    assert metric(output, "feature_baseline_drift_tenure") < 0.1  # only the shifted feature drifts
    assert metric(output, "data_drift_violations") == 1
    assert metric(output, "retrain_recommended", variant=None) == 1


def test_c_flipped_labels_are_a_model_quality_violation(setup, tmp_path) -> None:
    summary, output = monitor(setup, tmp_path, Scenario("flipped", flip_labels=0.2))
    champion = summary["variants"]["Champion"]
    found = [v for v in violations(output) if v["monitoring_type"] == "ModelQuality"]
    assert {v["metric_name"] for v in found} >= {"auc", "accuracy"}
    assert all(v["constraint_check_type"] == "baseline_drop_check" for v in found)
    registered = json.loads(setup.evaluation.read_text())["binary_classification_metrics"]["auc"]["value"]
    assert metric(output, "auc") < registered - 0.05
    assert champion["violations"]["data_drift"] == 0  # the requests did not change, the labels did
    assert summary["retrain_recommended"] is True
    assert metric(output, "model_quality_violations") == len(found)


def test_c_flipped_labels_that_arrive_a_day_late_are_judged_on_the_labelled_capture(setup, tmp_path) -> None:
    """As the platform backend runs it: the window's capture has no label yet; the capture of the window
    one label delay back (20 % flipped labels) has its labels now. Data quality judges the window
    (one feature x1.3: drift), model quality the labelled capture (a violation), each on its own rows."""
    shifted = "monthly_charges"
    window = local_monitoring.replay(
        tmp_path / "window",
        models={"Champion": setup.model_dir},
        scenario=Scenario("now", shift=((shifted, 1.3),)),
        records=RECORDS,
        seed=111,
        labelled=0.0,  # no label has arrived for this window
    )
    earlier = local_monitoring.replay(
        tmp_path / "earlier",
        models={"Champion": setup.model_dir},
        scenario=Scenario("flipped", flip_labels=0.2),
        records=3000,
        seed=112,
        start=local_monitoring.WINDOW_START - LABEL_DELAY,
    )
    output = tmp_path / "output"
    arguments = local_monitoring.monitor_arguments(window, setup.monitored, output, labelled=earlier)
    code, summary, printed = local_monitoring.run_monitor(arguments)
    assert code == 0, printed
    assert summary is not None
    champion = summary["variants"]["Champion"]
    assert champion["records"] == RECORDS  # data quality: the window's capture
    assert champion["labelled_records"] == 3000  # model quality: the labelled capture
    assert summary["labels"] == {"matched_in": "labelled_capture", "records": 3000, "malformed": 0}
    assert summary["ground_truth"]["unmatched"] == 0
    found = [v for v in violations(output) if v["monitoring_type"] == "ModelQuality"]
    assert {v["metric_name"] for v in found} >= {"auc", "accuracy"}
    assert champion["drifted_features"] == [shifted]
    assert champion["checks"]["attribution_drift"].startswith("evaluated")
    assert champion["checks"]["bias_drift"] == "evaluated"
    assert metric(output, "records_analyzed") == RECORDS
    assert metric(output, "labelled_records") == 3000
    assert (
        metric(output, "auc")
        < json.loads(setup.evaluation.read_text())["binary_classification_metrics"]["auc"]["value"] - 0.05
    )
    assert "matched against the labelled capture (3000 records)" in printed
    # Bias: DPPL and DI from the window's predictions, the recall and FPR gaps from the labelled rows.
    bias = json.loads((output / "Champion" / "bias.json").read_text())["post_training_bias_metrics"]["facets"]
    values = {m["name"]: m["value"] for entries in bias.values() for entry in entries for m in entry["metrics"]}
    assert set(values) == {"DPPL", "DI", "RD", "FPRD"}
    assert all(value is not None for value in values.values()), values

    # The same window without the labelled capture: its own capture has no label, nothing is judged.
    code, summary, _ = local_monitoring.run_monitor(
        local_monitoring.monitor_arguments(window, setup.monitored, tmp_path / "alone")
    )
    assert code == 0
    assert summary is not None
    assert summary["variants"]["Champion"]["labelled_records"] == 0
    assert summary["variants"]["Champion"]["checks"]["model_quality"].startswith("skipped: 0 labelled records")
    assert summary["labels"]["matched_in"] == "capture"


def test_missing_or_empty_labelled_inputs_mean_none(setup, tmp_path) -> None:
    """The job's labelled input may hold only the resolver's note (no labelled capture, no ground truth),
    or ground truth without the capture it labels: a missing or empty folder is "none"."""
    replayed = local_monitoring.replay(
        tmp_path / "replay", models={"Champion": setup.model_dir}, scenario=Scenario("clean"), records=1500, seed=707
    )
    labelled = tmp_path / "input" / "labelled"
    labelled.mkdir(parents=True)
    (labelled / "NO_LABELLED_DATA.txt").write_text("No capture or ground truth for the labelled window.\n")
    (labelled / "capture").mkdir()  # empty

    def run(capture: Path, truth: Path, name: str) -> dict[str, Any]:
        arguments = local_monitoring.monitor_arguments(replayed, setup.monitored, tmp_path / name)
        arguments[arguments.index("--ground-truth") + 1] = str(truth)
        code, summary, printed = local_monitoring.run_monitor([*arguments, "--labelled-capture", str(capture)])
        assert code == 0, printed
        assert summary is not None
        return summary

    # A missing or empty labelled capture: the labels are matched against the window's capture, as before.
    for capture in (labelled / "capture", labelled / "absent"):
        summary = run(capture, replayed.ground_truth, capture.name)
        assert summary["labels"]["matched_in"] == "capture"
        assert f"--labelled-capture {capture} is missing or holds no capture files" in summary["labels"]["note"]
        assert summary["variants"]["Champion"]["labelled_records"] == 1500
        assert summary["variants"]["Champion"]["checks"]["model_quality"].startswith("evaluated")
    # No ground truth (missing, or an empty folder): no labels, the rest is judged.
    (labelled / "ground-truth").mkdir()
    for truth in (labelled / "ground-truth", labelled / "no-such-folder"):
        summary = run(labelled / "capture", truth, f"no-labels-{truth.name}")
        champion = summary["variants"]["Champion"]
        assert summary["ground_truth"]["records"] == 0
        assert champion["labelled_records"] == 0
        assert champion["checks"]["model_quality"].startswith("skipped: 0 labelled records")
        assert champion["checks"]["data_drift"] == "evaluated"
        assert champion["records"] == 1500
    # A labelled capture with no ground truth: it is not even read.
    summary = run(replayed.capture, labelled / "ground-truth", "unlabelled-capture")
    assert summary["labels"] == {
        "matched_in": "labelled_capture",
        "records": 0,
        "malformed": 0,
        "note": "no ground truth: the labelled capture was not read",
    }
    assert summary["variants"]["Champion"]["labelled_records"] == 0


def test_baselines_and_models_may_share_one_folder_per_variant(setup, tmp_path) -> None:
    """``--baselines`` and ``--models`` the same folder: ``<Variant>/`` holds the version's baseline files,
    its ``model.tar.gz`` and the resolver's ``package.json``; a variant folder holding only a model (a
    configured variant the endpoint does not have) is no baseline."""
    serving = tmp_path / "serving"
    shutil.copytree(setup.monitored.baselines / "Champion", serving / "Champion")
    shutil.copy(setup.monitored.models / "Champion" / "model.tar.gz", serving / "Champion")
    (serving / "Champion" / "package.json").write_text('{"package_arn": "arn:aws:sagemaker:...:model-package/churn/7"}')
    (serving / "Shadow").mkdir()
    shutil.copy(setup.monitored.models / "Champion" / "model.tar.gz", serving / "Shadow")
    replayed = local_monitoring.replay(
        tmp_path / "replay", models={"Champion": setup.model_dir}, scenario=Scenario("clean"), records=1500, seed=909
    )
    shared = local_monitoring.Monitored(baselines=serving, models=serving)
    code, summary, printed = local_monitoring.run_monitor(
        local_monitoring.monitor_arguments(replayed, shared, tmp_path / "output")
    )
    assert code == 0, printed
    assert summary is not None
    assert set(summary["variants"]) == {"Champion"}
    checks = summary["variants"]["Champion"]["checks"]
    assert all(status.startswith("evaluated") for status in checks.values()), checks


def test_d_scores_shifted_for_one_segment_are_a_bias_violation(setup, tmp_path) -> None:
    summary, output = monitor(setup, tmp_path, Scenario("segment", segment_shift=("is_senior", 1.0, 0.3)))
    champion = summary["variants"]["Champion"]
    found = [v for v in violations(output) if v["constraint_check_type"] == "bias_drift_check"]
    assert found
    assert {v["facet"] for v in found} == {"is_senior"}
    assert {v["facet_value"] for v in found} == {"1"}
    assert "DPPL" in {v["metric_name"] for v in found}
    assert champion["violations"]["data_drift"] == 0
    assert champion["violations"]["data_integrity"] == 0
    assert summary["retrain_recommended"] is False  # bias drift notifies: a person decides
    assert summary["notify"] is True
    assert metric(output, "bias_drift_violations") == len(found)


def test_e_corrupted_records_are_integrity_violations_and_never_retrain(setup, tmp_path) -> None:
    summary, output = monitor(setup, tmp_path, Scenario("corrupted", corrupt=0.1))
    checks = {v["constraint_check_type"] for v in violations(output)}
    assert {"malformed_record_check", "missing_column_check", "completeness_check", "data_type_check"} <= checks
    assert checks & {"range_check", "categorical_values_check"}
    champion = summary["variants"]["Champion"]
    assert champion["violations"]["data_integrity"] >= 5
    assert champion["malformed"]["reasons"] == {"not valid JSON": champion["malformed_records"]}
    assert summary["retrain_recommended"] is False
    assert "retrain" not in [a["action"] for a in summary["actions"]]
    assert metric(output, "retrain_recommended", variant=None) == 0
    assert metric(output, "data_integrity_violations") == champion["violations"]["data_integrity"]


def test_integrity_vetoes_retraining_even_when_the_data_also_drifts(setup, tmp_path) -> None:
    both = Scenario("both", shift=(("monthly_charges", 1.3),), corrupt=0.1)
    summary, _ = monitor(setup, tmp_path, both)
    champion = summary["variants"]["Champion"]
    assert champion["violations"]["data_drift"] >= 1
    assert champion["violations"]["data_integrity"] >= 1
    assert summary["retrain_recommended"] is False
    assert summary["retrain_reason"].startswith("withheld:")


@pytest.mark.slow
def test_at_most_one_false_alarm_in_20_seeds_of_clean_traffic(setup, tmp_path) -> None:
    alarms = {}
    for seed in range(1000, 1020):
        summary, _ = monitor(setup, tmp_path / str(seed), Scenario("clean"), seed=seed)
        champion = summary["variants"]["Champion"]
        assert all(status.startswith("evaluated") for status in champion["checks"].values()), champion["checks"]
        if summary["status"] != "ok":
            alarms[seed] = champion["violations"]
        shutil.rmtree(tmp_path / str(seed))
    assert len(alarms) <= 1, f"false alarms: {alarms}"


def test_a_challenger_is_compared_with_the_champion(setup, tmp_path) -> None:
    weak = local_monitoring.prepare(
        tmp_path / "weak",
        model_archive=setup.weak_archive,
        baseline_data=setup.baseline_data,
        test_data=setup.test_data,
        evaluation=None,
        variants=("Challenger",),
        sample_size=20_000,
    )
    shutil.copytree(setup.monitored.baselines / "Champion", weak.baselines / "Champion")
    shutil.copytree(setup.monitored.models / "Champion", weak.models / "Champion")
    models = {"Champion": setup.model_dir, "Challenger": setup.weak_model_dir}
    replayed = local_monitoring.replay(tmp_path, models=models, scenario=Scenario("ab"), records=6000, seed=202)
    output = tmp_path / "output"
    code, summary, _ = local_monitoring.run_monitor(local_monitoring.monitor_arguments(replayed, weak, output))
    assert code == 0
    assert summary is not None
    (comparison,) = summary["comparisons"]
    assert comparison["challenger"] == "Challenger"
    assert comparison["champion"] == "Champion"
    assert comparison["verdict"] == "worse"
    assert comparison["verdict_code"] == -1
    assert comparison["interval"][1] < 0 < comparison["champion_value"] - comparison["challenger_value"]
    assert comparison["paired"] is False
    assert sum(comparison["labelled_records"].values()) == 6000
    assert metric(output, "challenger_verdict", "Challenger") == -1
    assert metric(output, "challenger_auc_difference", "Challenger") == comparison["difference"]
    assert "significantly worse" in next(a["reason"] for a in summary["actions"] if a["action"] == "notify")


def test_same_model_on_both_variants_is_not_yet_significant(setup, tmp_path) -> None:
    models = {"Champion": setup.model_dir, "Challenger": setup.model_dir}
    replayed = local_monitoring.replay(tmp_path, models=models, scenario=Scenario("same"), records=4000, seed=303)
    code, summary, _ = local_monitoring.run_monitor(
        local_monitoring.monitor_arguments(replayed, setup.monitored, tmp_path / "output")
    )
    assert code == 0
    assert summary is not None
    (comparison,) = summary["comparisons"]
    assert comparison["verdict"] == "not yet significant"
    low, high = comparison["interval"]
    assert low < 0 < high


def test_the_job_runs_from_a_flat_code_bundle_as_a_subprocess(setup, tmp_path) -> None:
    """What the pipeline ships: monitoring_code/*.py plus the feature schema at the root of one folder."""
    bundle = tmp_path / "code"
    bundle.mkdir()
    for path in (ROOT / "monitoring_code").glob("*.py"):
        shutil.copy(path, bundle)
    for name in ("feature_schema.py", "feature_schema.json"):
        shutil.copy(ROOT / "training_code" / name, bundle)
    replayed = local_monitoring.replay(
        tmp_path / "replay", models={"Champion": setup.model_dir}, scenario=Scenario("clean"), records=1500, seed=404
    )
    output = tmp_path / "output"
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "monitor.py", *local_monitoring.monitor_arguments(replayed, setup.monitored, output)],
        cwd=bundle,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Champion: 1500 records" in result.stdout
    summary = json.loads((output / "summary.json").read_text())
    assert summary["status"] == "ok"
    assert (output / "report.html").read_text().count("data:image/png;base64,") >= 2


def test_bad_inputs_exit_2_with_the_reason_in_the_failure_file(setup, tmp_path) -> None:
    replayed = local_monitoring.replay(
        tmp_path / "replay", models={"Champion": setup.model_dir}, scenario=Scenario("clean"), records=200, seed=505
    )
    output = tmp_path / "output"
    config = tmp_path / "config.json"
    config.write_text('{"drift_threshold": 0.1, "min_record": 100}')
    arguments = local_monitoring.monitor_arguments(replayed, setup.monitored, output, config=config)
    code, summary, _ = local_monitoring.run_monitor(arguments)
    assert code == 2
    assert summary is None
    failure = (output / "failure").read_text()
    assert "unknown key min_record" in failure
    assert "min_records" in failure

    misplaced = tmp_path / "flat"
    misplaced.mkdir()
    shutil.copy(next(replayed.capture.rglob("*.jsonl")), misplaced / "capture.jsonl")
    arguments = local_monitoring.monitor_arguments(replayed, setup.monitored, output)
    arguments[arguments.index("--capture") + 1] = str(misplaced)
    code, _, _ = local_monitoring.run_monitor(arguments)
    assert code == 2
    assert (
        "capture.jsonl is not in SageMaker's layout <endpoint>/<variant>/yyyy/mm/dd/hh"
        in (output / "failure").read_text()
    )

    arguments = local_monitoring.monitor_arguments(replayed, setup.monitored, output)
    arguments[arguments.index("--window-end") + 1] = "yesterday"
    code, _, _ = local_monitoring.run_monitor(arguments)
    assert code == 2
    assert "--window-end 'yesterday' is not an ISO 8601 time" in (output / "failure").read_text()


def test_a_variant_without_a_baseline_still_gets_integrity_checks(setup, tmp_path) -> None:
    replayed = local_monitoring.replay(
        tmp_path / "replay",
        models={"Champion": setup.model_dir, "Canary": setup.model_dir},
        scenario=Scenario("clean"),
        records=1000,
        seed=606,
    )
    output = tmp_path / "output"
    code, summary, _ = local_monitoring.run_monitor(
        local_monitoring.monitor_arguments(replayed, setup.monitored, output)
    )
    assert code == 0
    assert summary is not None
    canary = summary["variants"]["Canary"]
    assert canary["checks"]["data_integrity"] == "evaluated"
    assert canary["checks"]["data_drift"].startswith("skipped: no baseline")
    assert metric(output, "records_analyzed", "Canary") == canary["records"] > 0
    # Challenger has a baseline but served nothing: it still reports zeros
    assert summary["variants"]["Challenger"]["records"] == 0
    assert metric(output, "records_analyzed", "Challenger") == 0
