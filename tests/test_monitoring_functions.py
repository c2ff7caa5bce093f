"""The monitoring Lambda functions against moto (S3, CloudWatch) and botocore's Stubber (SageMaker:
moto lacks model packages' baselines and monitoring schedules)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

import model_monitor_republisher
import monitoring_metrics
import monitoring_resolver
import retrain_on_drift

REGION = "eu-west-1"
ACCOUNT = "123456789012"
ENDPOINT = "churn-prod"
CAPTURE = "churn-prod-capture"
MONITORING = "churn-prod-monitoring"
MODELS = "churn-prod-models"
NAMESPACE = "MLPlatform/ModelMonitoring"
WINDOW_END = datetime(2026, 12, 1, 11, tzinfo=UTC)
NOW = datetime(2026, 12, 1, 11, 20, tzinfo=UTC)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """moto S3 and CloudWatch, a stubbed SageMaker client, patched into every function module."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        clients = {
            "s3": boto3.client("s3", region_name=REGION),
            "cloudwatch": boto3.client("cloudwatch", region_name=REGION),
            "sagemaker": boto3.client("sagemaker", region_name=REGION),
        }
        for bucket in (CAPTURE, MONITORING, MODELS):
            clients["s3"].create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        stubber = Stubber(clients["sagemaker"])
        for module in (monitoring_resolver, monitoring_metrics, retrain_on_drift, model_monitor_republisher):
            monkeypatch.setattr(module, "_client", clients.__getitem__)
        with stubber:
            yield {**clients, "stubber": stubber}
        stubber.assert_no_pending_responses()


def put(s3: Any, bucket: str, key: str, body: Any = b"{}") -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body if isinstance(body, bytes) else json.dumps(body).encode())


def read(s3: Any, uri: str) -> Any:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


# --- ResolveBaselines -----------------------------------------------------------------------------


def test_the_window_is_the_last_complete_interval_or_the_backfilled_one() -> None:
    window = monitoring_resolver.window_for("latest", now=NOW, window_hours=1, schedule_hours=1)
    assert (window.start, window.end) == (WINDOW_END - timedelta(hours=1), WINDOW_END)
    six = monitoring_resolver.window_for("", now=NOW, window_hours=12, schedule_hours=6)
    assert six.end == datetime(2026, 12, 1, 6, tzinfo=UTC)
    assert six.start == datetime(2026, 11, 30, 18, tzinfo=UTC)
    assert len(six.hours()) == 12
    backfill = monitoring_resolver.window_for("2026-11-02T05:00:00Z", now=NOW, window_hours=2, schedule_hours=1)
    assert backfill.start == datetime(2026, 11, 2, 3, tzinfo=UTC)
    with pytest.raises(monitoring_resolver.ResolveError, match="on the hour"):
        monitoring_resolver.window_for("2026-11-02T05:30:00Z", now=NOW, window_hours=1, schedule_hours=1)
    with pytest.raises(monitoring_resolver.ResolveError, match="ISO 8601"):
        monitoring_resolver.window_for("yesterday", now=NOW, window_hours=1, schedule_hours=1)


def package_arn(version: int) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/churn-prod/{version}"


def baseline_prefix(version: int) -> str:
    return f"baselines/churn-prod-training/execution-{version}/"


def stub_endpoint(
    stubber: Stubber, variants: dict[str, int], *, shadow: str | None = None, baselines: bool = True
) -> None:
    """DescribeEndpoint -> DescribeEndpointConfig -> DescribeModel / DescribeModelPackage per variant."""
    created = datetime(2026, 11, 1, tzinfo=UTC)
    stubber.add_response(
        "describe_endpoint",
        {
            "EndpointName": ENDPOINT,
            "EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT}",
            "EndpointConfigName": "churn-prod-config-1",
            "EndpointStatus": "InService",
            "CreationTime": created,
            "LastModifiedTime": created,
        },
        {"EndpointName": ENDPOINT},
    )
    production = [n for n in variants if n != shadow]
    stubber.add_response(
        "describe_endpoint_config",
        {
            "EndpointConfigName": "churn-prod-config-1",
            "EndpointConfigArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint-config/churn-prod-config-1",
            "ProductionVariants": [{"VariantName": n, "ModelName": f"model-{n}"} for n in production],
            **(
                {"ShadowProductionVariants": [{"VariantName": shadow, "ModelName": f"model-{shadow}"}]}
                if shadow
                else {}
            ),
            "DataCaptureConfig": {
                "EnableCapture": True,
                "InitialSamplingPercentage": 20,
                "DestinationS3Uri": f"s3://{CAPTURE}/{ENDPOINT}/capture",
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            },
            "CreationTime": created,
        },
        {"EndpointConfigName": "churn-prod-config-1"},
    )
    for name in [*production, *([shadow] if shadow else [])]:
        version = variants[name]
        stubber.add_response(
            "describe_model",
            {
                "ModelName": f"model-{name}",
                "ModelArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/model-{name.lower()}",
                "CreationTime": created,
                "PrimaryContainer": {"ModelPackageName": package_arn(version)},
            },
            {"ModelName": f"model-{name}"},
        )
        package: dict[str, Any] = {
            "ModelPackageName": "churn-prod",
            "ModelPackageArn": package_arn(version),
            "CreationTime": created,
            "ModelPackageStatus": "Completed",
            "ModelPackageStatusDetails": {"ValidationStatuses": []},
            "InferenceSpecification": {
                "Containers": [
                    {"Image": "image", "ModelDataUrl": f"s3://{MODELS}/pipelines/job-{version}/output/model.tar.gz"}
                ],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
        }
        if baselines:
            statistics = f"s3://{MONITORING}/{baseline_prefix(version)}data_quality/statistics.json"
            package["DriftCheckBaselines"] = {
                "ModelDataQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": statistics}}
            }
        stubber.add_response("describe_model_package", package, {"ModelPackageName": package_arn(version)})


def hour_key(variant: str, hour: datetime, name: str = "part") -> str:
    return f"{ENDPOINT}/capture/{ENDPOINT}/{variant}/{hour:%Y/%m/%d/%H}/{name}.jsonl"


def event(**overrides: Any) -> dict[str, Any]:
    return {
        "endpoint_name": ENDPOINT,
        "execution_id": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/churn-prod-monitoring/execution/exec1",
        "window_end": "2026-12-01T11:00:00Z",
        "window_hours": 1,
        "schedule_hours": 1,
        "label_delay_hours": 24,
        "variants": ["Champion", "Challenger", "Shadow"],
        **overrides,
    }


@pytest.fixture
def resolver_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITORING_BUCKET", MONITORING)
    monkeypatch.setenv("GROUND_TRUTH_URI", f"s3://{CAPTURE}/{ENDPOINT}/ground-truth/")


def write_baselines(s3: Any, version: int) -> None:
    for name in (
        "data_quality/statistics.json",
        "data_quality/constraints.json",
        "baseline_sample.csv",
        "manifest.json",
    ):
        put(s3, MONITORING, f"{baseline_prefix(version)}{name}", {"version": version, "file": name})


@pytest.mark.usefixtures("resolver_env")
def test_resolver_lists_the_window_copies_the_served_baselines_and_writes_manifests(aws: dict[str, Any]) -> None:
    s3 = aws["s3"]
    write_baselines(s3, 1)
    write_baselines(s3, 2)
    in_window = WINDOW_END - timedelta(hours=1)
    labelled_hour = in_window - timedelta(hours=24)
    for key in (
        hour_key("Champion", in_window, "a"),
        hour_key("Champion", in_window, "b"),
        hour_key("Challenger", in_window),
        hour_key("Shadow", in_window),
        hour_key("Champion", in_window - timedelta(hours=1)),  # the hour before: not this run's
        hour_key("Champion", labelled_hour),  # one label delay back: labelled
        f"{ENDPOINT}/ground-truth/{labelled_hour + timedelta(hours=3):%Y/%m/%d/%H}/labels.jsonl",
        f"{ENDPOINT}/ground-truth/{in_window:%Y/%m/%d/%H}/labels.jsonl",
        f"{ENDPOINT}/ground-truth/{labelled_hour - timedelta(hours=1):%Y/%m/%d/%H}/old.jsonl",  # before the window
    ):
        put(s3, CAPTURE, key, b'{"captureData": {}}\n')
    stub_endpoint(aws["stubber"], {"Champion": 1, "Challenger": 2, "Shadow": 2}, shadow="Shadow")

    outputs = monitoring_resolver.handler(event(), None)

    assert outputs["status"] == "run"
    assert (outputs["window_start"], outputs["window_end"]) == ("2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z")
    assert outputs["capture_files"] == 4
    assert outputs["variants"] == "Champion,Challenger,Shadow"
    run = f"s3://{MONITORING}/runs/{ENDPOINT}/exec1/"
    assert outputs["capture_manifest"] == f"{run}capture.manifest"
    capture = read(s3, outputs["capture_manifest"])
    assert capture[0] == {"prefix": f"s3://{CAPTURE}/{ENDPOINT}/"}
    assert sorted(capture[1:]) == sorted(
        k.removeprefix(f"{ENDPOINT}/")
        for k in (
            hour_key("Champion", in_window, "a"),
            hour_key("Champion", in_window, "b"),
            hour_key("Challenger", in_window),
            hour_key("Shadow", in_window),
        )
    )
    labelled = read(s3, outputs["labelled_manifest"])
    assert labelled[0] == {"prefix": f"s3://{CAPTURE}/{ENDPOINT}/"}
    assert sorted(labelled[1:]) == sorted(
        [
            hour_key("Champion", labelled_hour).removeprefix(f"{ENDPOINT}/"),
            f"ground-truth/{labelled_hour + timedelta(hours=3):%Y/%m/%d/%H}/labels.jsonl",
            f"ground-truth/{in_window:%Y/%m/%d/%H}/labels.jsonl",
        ]
    )
    # Each variant's baselines, copied from the version it serves, with the version recorded last.
    assert outputs["baselines"] == f"s3://{MONITORING}/serving/{ENDPOINT}/"
    for variant, version in (("Champion", 1), ("Challenger", 2), ("Shadow", 2)):
        copied = read(s3, f"s3://{MONITORING}/serving/{ENDPOINT}/{variant}/data_quality/statistics.json")
        assert copied["version"] == version
        marker = read(s3, f"s3://{MONITORING}/serving/{ENDPOINT}/{variant}/package.json")
        assert marker["package_arn"] == package_arn(version)
        assert outputs[f"model_{variant}"] == f"s3://{MODELS}/pipelines/job-{version}/output/model.tar.gz"
    resolution = read(s3, f"{run}resolution.json")
    assert resolution["files"] == {"capture": 4, "labelled_capture": 1, "ground_truth": 2}
    assert resolution["variants"]["Challenger"]["package"] == package_arn(2)


@pytest.mark.usefixtures("resolver_env")
def test_a_variant_is_recopied_only_when_it_serves_a_new_version(aws: dict[str, Any]) -> None:
    s3 = aws["s3"]
    write_baselines(s3, 1)
    put(s3, MONITORING, f"{baseline_prefix(1)}only_in_v1.json", {})
    write_baselines(s3, 3)
    prefix = f"serving/{ENDPOINT}/Champion/"
    served = monitoring_resolver.Served(
        "Champion",
        package_arn(1),
        "s3://m/model.tar.gz",
        monitoring_resolver.S3Location(MONITORING, baseline_prefix(1)),
    )
    assert monitoring_resolver.refresh_serving_copy(served, MONITORING, prefix) is True
    assert monitoring_resolver.refresh_serving_copy(served, MONITORING, prefix) is False
    newer = monitoring_resolver.Served(
        "Champion",
        package_arn(3),
        "s3://m/model.tar.gz",
        monitoring_resolver.S3Location(MONITORING, baseline_prefix(3)),
    )
    assert monitoring_resolver.refresh_serving_copy(newer, MONITORING, prefix) is True
    keys = {k.removeprefix(prefix) for k in monitoring_resolver.list_keys(MONITORING, prefix)}
    assert "only_in_v1.json" not in keys  # nothing of the old version is left behind
    assert read(s3, f"s3://{MONITORING}/{prefix}data_quality/statistics.json")["version"] == 3


@pytest.mark.usefixtures("resolver_env")
def test_no_endpoint_yet_is_a_clean_skip(aws: dict[str, Any]) -> None:
    aws["stubber"].add_client_error(
        "describe_endpoint",
        "ValidationException",
        f'Could not find endpoint "{ENDPOINT}".',
        expected_params={"EndpointName": ENDPOINT},
    )
    outputs = monitoring_resolver.handler(event(), None)
    assert outputs["status"] == "no_endpoint"
    assert outputs["capture_files"] == 0
    assert not aws["s3"].list_objects_v2(Bucket=MONITORING).get("Contents")


@pytest.mark.usefixtures("resolver_env")
def test_no_traffic_in_the_window_is_a_clean_skip(aws: dict[str, Any]) -> None:
    write_baselines(aws["s3"], 1)
    put(aws["s3"], CAPTURE, hour_key("Champion", WINDOW_END - timedelta(hours=5)), b"{}\n")
    stub_endpoint(aws["stubber"], {"Champion": 1, "Challenger": 1})
    outputs = monitoring_resolver.handler(event(variants=["Champion", "Challenger"]), None)
    assert outputs["status"] == "no_traffic"
    assert outputs["capture_files"] == 0


@pytest.mark.usefixtures("resolver_env")
def test_without_labelled_data_the_labelled_input_holds_only_a_note(aws: dict[str, Any]) -> None:
    s3 = aws["s3"]
    write_baselines(s3, 1)
    put(s3, CAPTURE, hour_key("Champion", WINDOW_END - timedelta(hours=1)), b"{}\n")
    stub_endpoint(aws["stubber"], {"Champion": 1, "Challenger": 1})
    outputs = monitoring_resolver.handler(event(variants=["Champion", "Challenger"]), None)
    manifest = read(s3, outputs["labelled_manifest"])
    assert manifest == [
        {"prefix": f"s3://{MONITORING}/runs/{ENDPOINT}/exec1/empty/"},
        "NO_LABELLED_DATA.txt",
    ]
    note = s3.get_object(Bucket=MONITORING, Key=f"runs/{ENDPOINT}/exec1/empty/NO_LABELLED_DATA.txt")
    assert b"No capture or ground truth" in note["Body"].read()


@pytest.mark.usefixtures("resolver_env")
def test_a_version_registered_without_baselines_is_an_error_naming_it(aws: dict[str, Any]) -> None:
    put(aws["s3"], CAPTURE, hour_key("Champion", WINDOW_END - timedelta(hours=1)), b"{}\n")
    stub_endpoint(aws["stubber"], {"Champion": 4}, baselines=False)
    with pytest.raises(monitoring_resolver.ResolveError, match=r"model-package/churn-prod/4, registered without"):
        monitoring_resolver.handler(event(variants=["Champion"]), None)


# --- PublishMetrics -------------------------------------------------------------------------------


def metrics_document(**overrides: Any) -> dict[str, Any]:
    dims = {"Endpoint": ENDPOINT, "Variant": "Champion", "MonitoringType": "DataQuality"}
    return {
        "namespace": NAMESPACE,
        "timestamp": "2026-12-01T11:00:00Z",
        "metrics": [
            {"name": "data_drift_violations", "value": 2, "unit": "Count", "dimensions": dims},
            {"name": "feature_baseline_drift_tenure", "value": 0.31, "unit": "None", "dimensions": dims},
            {
                "name": "bias_metric_DPPL",
                "value": -0.04,
                "unit": "None",
                "dimensions": {**dims, "MonitoringType": "ModelBias", "Facet": "is_senior", "FacetValue": "1"},
            },
        ],
        **overrides,
    }


@pytest.fixture
def metrics_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRIC_NAMESPACE", NAMESPACE)
    monkeypatch.setenv("ENDPOINT_NAME", ENDPOINT)


def statistic(cloudwatch: Any, name: str, dimensions: dict[str, str]) -> list[float]:
    response = cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=name,
        Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
        StartTime=WINDOW_END - timedelta(hours=1),
        EndTime=WINDOW_END + timedelta(hours=1),
        Period=3600,
        Statistics=["Maximum"],
    )
    return [point["Maximum"] for point in response["Datapoints"]]


@pytest.mark.usefixtures("metrics_env")
def test_publish_sends_metrics_json_to_the_namespace(aws: dict[str, Any]) -> None:
    put(aws["s3"], MONITORING, "reports/churn-prod/exec1/metrics.json", metrics_document())
    result = monitoring_metrics.handler(
        {"mode": "report", "metrics_uri": f"s3://{MONITORING}/reports/churn-prod/exec1/metrics.json"}, None
    )
    assert result == {"published": 3}
    dims = {"Endpoint": ENDPOINT, "Variant": "Champion", "MonitoringType": "DataQuality"}
    assert statistic(aws["cloudwatch"], "data_drift_violations", dims) == [2.0]
    assert statistic(aws["cloudwatch"], "feature_baseline_drift_tenure", dims) == [0.31]
    bias = {**dims, "MonitoringType": "ModelBias", "Facet": "is_senior", "FacetValue": "1"}
    assert statistic(aws["cloudwatch"], "bias_metric_DPPL", bias) == [-0.04]


def test_publish_batches_large_documents(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[int] = []

    class Recorder:
        def put_metric_data(self, Namespace: str, MetricData: list[dict[str, Any]]) -> None:  # noqa: N803
            sent.append(len(MetricData))

    monkeypatch.setattr(monitoring_metrics, "_client", lambda service: Recorder())
    assert monitoring_metrics.publish(NAMESPACE, [{"MetricName": "m"}] * 400) == 400
    assert sent == [150, 150, 100]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (metrics_document(namespace="Other"), "publishes to 'MLPlatform/ModelMonitoring'"),
        (metrics_document(timestamp="noon"), "not ISO 8601"),
        (
            metrics_document(metrics=[{"name": "x", "value": float("nan"), "dimensions": {"Endpoint": ENDPOINT}}]),
            "not a finite number",
        ),
        (
            metrics_document(metrics=[{"name": "x", "value": 1, "dimensions": {"Endpoint": "other"}}]),
            "is not 'churn-prod'",
        ),
        (
            metrics_document(
                metrics=[{"name": "x", "value": 1, "unit": "Bytes", "dimensions": {"Endpoint": ENDPOINT}}]
            ),
            "unit",
        ),
    ],
)
def test_publish_refuses_what_the_contract_does_not_allow(document: dict[str, Any], message: str) -> None:
    with pytest.raises(monitoring_metrics.MetricsError, match=message):
        monitoring_metrics.metric_data(document, namespace=NAMESPACE, endpoint=ENDPOINT)


@pytest.mark.usefixtures("metrics_env")
def test_a_window_without_traffic_publishes_zero_records_and_no_endpoint_nothing(aws: dict[str, Any]) -> None:
    quiet = {
        "mode": "skipped",
        "status": "no_traffic",
        "variants": "Champion,Challenger",
        "window_end": "2026-12-01T11:00:00Z",
    }
    assert monitoring_metrics.handler(quiet, None) == {"published": 2}
    dims = {"Endpoint": ENDPOINT, "Variant": "Challenger", "MonitoringType": "DataQuality"}
    assert statistic(aws["cloudwatch"], "records_analyzed", dims) == [0.0]
    assert monitoring_metrics.handler({**quiet, "status": "no_endpoint"}, None) == {"published": 0}
    with pytest.raises(monitoring_metrics.MetricsError, match="mode"):
        monitoring_metrics.handler({"mode": "other"}, None)


# --- retrain on drift -----------------------------------------------------------------------------


def alarm_event(
    metric: str = "data_drift_violations", variant: str = "Champion", state: str = "ALARM"
) -> dict[str, Any]:
    return {
        "source": "aws.cloudwatch",
        "detail-type": "CloudWatch Alarm State Change",
        "detail": {
            "alarmName": f"{ENDPOINT}-monitoring-{variant}-data-drift",
            "state": {"value": state, "reason": "Threshold Crossed", "timestamp": "2026-12-01T11:21:00.000+0000"},
            "configuration": {
                "metrics": [
                    {
                        "id": "m1",
                        "metricStat": {
                            "metric": {
                                "namespace": NAMESPACE,
                                "name": metric,
                                "dimensions": {
                                    "Endpoint": ENDPOINT,
                                    "Variant": variant,
                                    "MonitoringType": "DataQuality",
                                },
                            },
                            "period": 3600,
                            "stat": "Maximum",
                        },
                        "returnData": True,
                    }
                ]
            },
        },
    }


@pytest.fixture
def retrain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "TRAINING_PIPELINE_NAME": "churn-prod-training",
        "METRIC_NAMESPACE": NAMESPACE,
        "ENDPOINT_NAME": ENDPOINT,
        "VARIANTS": "Champion,Challenger",
        "COOLDOWN_HOURS": "24",
        "PERIOD_SECONDS": "3600",
        "LOOKBACK_PERIODS": "1",
    }.items():
        monkeypatch.setenv(name, value)


def put_integrity(cloudwatch: Any, variant: str, value: float, *, ago: timedelta = timedelta(minutes=20)) -> None:
    hour = (datetime.now(UTC) - ago).replace(minute=0, second=0, microsecond=0)
    cloudwatch.put_metric_data(
        Namespace=NAMESPACE,
        MetricData=[
            {
                "MetricName": "data_integrity_violations",
                "Dimensions": [
                    {"Name": "Endpoint", "Value": ENDPOINT},
                    {"Name": "Variant", "Value": variant},
                    {"Name": "MonitoringType", "Value": "DataQuality"},
                ],
                "Timestamp": hour,
                "Value": value,
                "Unit": "Count",
            }
        ],
    )


def executions(*summaries: dict[str, Any]) -> dict[str, Any]:
    return {"PipelineExecutionSummaries": list(summaries)}


def summary(name: str, status: str, age: timedelta) -> dict[str, Any]:
    return {
        "PipelineExecutionArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/churn-prod-training/execution/{name}",
        "PipelineExecutionDisplayName": name,
        "PipelineExecutionStatus": status,
        "StartTime": datetime.now(UTC) - age,
    }


LIST_PARAMS = {
    "PipelineName": "churn-prod-training",
    "SortBy": "CreationTime",
    "SortOrder": "Descending",
    "MaxResults": 50,
}


@pytest.mark.usefixtures("retrain_env")
def test_drift_starts_the_training_pipeline_once_per_alarm_transition(aws: dict[str, Any]) -> None:
    put_integrity(aws["cloudwatch"], "Champion", 0)
    stubber = aws["stubber"]
    stubber.add_response(
        "list_pipeline_executions",
        executions(
            summary("weekly", "Succeeded", timedelta(hours=2)),
            summary("retrain-on-data-drift-1", "Failed", timedelta(days=3)),
        ),
        LIST_PARAMS,
    )
    execution = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/churn-prod-training/execution/new"
    token = hashlib.sha256(
        f"{ENDPOINT}-monitoring-Champion-data-drift|2026-12-01T11:21:00.000+0000".encode()
    ).hexdigest()
    stubber.add_response(
        "start_pipeline_execution",
        {"PipelineExecutionArn": execution},
        {
            "PipelineName": "churn-prod-training",
            "PipelineExecutionDisplayName": ANY,
            "PipelineExecutionDescription": ANY,
            "ClientRequestToken": token,
        },
    )
    result = retrain_on_drift.handler(alarm_event(), None)
    assert result["event"] == "started"
    assert result["execution"] == execution


@pytest.mark.usefixtures("retrain_env")
@pytest.mark.parametrize("variant", ["Champion", "Challenger"])
def test_integrity_violations_of_any_variant_veto_retraining(aws: dict[str, Any], variant: str) -> None:
    put_integrity(aws["cloudwatch"], variant, 3)
    result = retrain_on_drift.handler(alarm_event(), None)  # no SageMaker call is stubbed: none may happen
    assert result["event"] == "vetoed"
    assert result["integrity_violations"] == {variant: 3.0}


@pytest.mark.usefixtures("retrain_env")
def test_old_integrity_violations_do_not_veto(aws: dict[str, Any]) -> None:
    put_integrity(aws["cloudwatch"], "Champion", 5, ago=timedelta(hours=6))
    aws["stubber"].add_response(
        "list_pipeline_executions", executions(summary("running", "Executing", timedelta(minutes=5))), LIST_PARAMS
    )
    assert retrain_on_drift.handler(alarm_event(), None)["event"] == "cooling_down"  # got past the veto


@pytest.mark.usefixtures("retrain_env")
@pytest.mark.parametrize(
    "blocking",
    [
        summary("retrain-on-model-quality-202612010900", "Succeeded", timedelta(hours=3)),  # within the cool-down
        summary("weekly", "Executing", timedelta(minutes=40)),  # a training run is under way
    ],
)
def test_a_recent_or_running_execution_holds_retraining_back(aws: dict[str, Any], blocking: dict[str, Any]) -> None:
    aws["stubber"].add_response("list_pipeline_executions", executions(blocking), LIST_PARAMS)
    result = retrain_on_drift.handler(alarm_event(), None)
    assert result["event"] == "cooling_down"
    assert result["executions"] == [blocking["PipelineExecutionArn"]]


@pytest.mark.usefixtures("retrain_env")
def test_other_states_and_other_endpoints_are_ignored(aws: dict[str, Any]) -> None:
    assert retrain_on_drift.handler(alarm_event(state="OK"), None)["event"] == "ignored"
    other = alarm_event()
    other["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"]["Endpoint"] = "churn-dev"
    assert retrain_on_drift.handler(other, None)["event"] == "ignored"


# --- Model Monitor republisher --------------------------------------------------------------------


SCHEDULES = {
    f"{ENDPOINT}-data-quality": "DataQuality",
    f"{ENDPOINT}-model-quality": "ModelQuality",
    f"{ENDPOINT}-model-bias": "ModelBias",
    f"{ENDPOINT}-model-explainability": "ModelExplainability",
}


@pytest.fixture
def republisher_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRIC_NAMESPACE", NAMESPACE)
    monkeypatch.setenv("ENDPOINT_NAME", ENDPOINT)
    monkeypatch.setenv("VARIANT", "Champion")
    monkeypatch.setenv("SCHEDULES", json.dumps(SCHEDULES))


def processing_event(schedule: str, status: str = "Completed", output: str = "") -> dict[str, Any]:
    return {
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Processing Job State Change",
        "detail": {
            "ProcessingJobName": "model-monitoring-202612011100-abc",
            "ProcessingJobStatus": status,
            "MonitoringScheduleArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:monitoring-schedule/{schedule}",
            "ProcessingEndTime": int((WINDOW_END + timedelta(minutes=17)).timestamp() * 1000),
            "ProcessingOutputConfig": {"Outputs": [{"OutputName": "result", "S3Output": {"S3Uri": output}}]},
        },
    }


@pytest.mark.usefixtures("republisher_env")
def test_republisher_maps_model_monitor_violations_to_the_platform_metrics(aws: dict[str, Any]) -> None:
    s3 = aws["s3"]
    prefix = f"model-monitor/{ENDPOINT}/data-quality/{ENDPOINT}/{ENDPOINT}-data-quality/2026/12/01/11"
    put(
        s3,
        MONITORING,
        f"{prefix}/constraint_violations.json",
        {
            "violations": [
                {"feature_name": "tenure", "constraint_check_type": "baseline_drift_check", "description": "d"},
                {
                    "feature_name": "monthly_charges",
                    "constraint_check_type": "baseline_drift_check",
                    "description": "d",
                },
                {"feature_name": "tenure", "constraint_check_type": "completeness_check", "description": "c"},
            ]
        },
    )
    put(s3, MONITORING, f"{prefix}/statistics.json", {"dataset": {"item_count": 4200}})
    uri = f"s3://{MONITORING}/{prefix}"
    assert model_monitor_republisher.handler(processing_event(f"{ENDPOINT}-data-quality", output=uri), None) == {
        "published": 3
    }
    dims = {"Endpoint": ENDPOINT, "Variant": "Champion", "MonitoringType": "DataQuality"}
    assert statistic(aws["cloudwatch"], "data_drift_violations", dims) == [2.0]
    assert statistic(aws["cloudwatch"], "data_integrity_violations", dims) == [1.0]
    assert statistic(aws["cloudwatch"], "records_analyzed", dims) == [4200.0]

    quality = f"s3://{MONITORING}/model-monitor/{ENDPOINT}/model-quality/run"
    put(
        s3,
        MONITORING,
        f"model-monitor/{ENDPOINT}/model-quality/run/constraint_violations.json",
        {"violations": [{"constraint_check_type": "LessThanThreshold"}]},
    )
    model_monitor_republisher.handler(processing_event(f"{ENDPOINT}-model-quality", output=quality), None)
    assert statistic(aws["cloudwatch"], "model_quality_violations", {**dims, "MonitoringType": "ModelQuality"}) == [1.0]

    # A run without violations writes no report: zero, not missing.
    bias = f"s3://{MONITORING}/model-monitor/{ENDPOINT}/model-bias/run"
    model_monitor_republisher.handler(processing_event(f"{ENDPOINT}-model-bias", output=bias), None)
    assert statistic(aws["cloudwatch"], "bias_drift_violations", {**dims, "MonitoringType": "ModelBias"}) == [0.0]


@pytest.mark.usefixtures("republisher_env")
def test_republisher_ignores_other_schedules_and_unfinished_runs(aws: dict[str, Any]) -> None:
    assert model_monitor_republisher.handler(processing_event("someone-elses-schedule"), None) == {"published": 0}
    assert model_monitor_republisher.handler(processing_event(f"{ENDPOINT}-data-quality", "Failed"), None) == {
        "published": 0
    }
    assert model_monitor_republisher.window_end({"ProcessingEndTime": "2026-12-01T11:17:00Z"}) == WINDOW_END
    assert model_monitor_republisher.window_end({"Environment": {"end_time": "2026-12-01T11:00:00Z"}}) == WINDOW_END
