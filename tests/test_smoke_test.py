"""The smoke test the delivery pipeline runs after each deployment: it passes a healthy environment and
fails, saying what failed, on a wrong answer, a slow answer, a 5xx, a missing pipeline and more.

SSM runs on moto; the SageMaker control plane and runtime on botocore's Stubber (moto's endpoints
cannot answer with a chosen body, status or delay).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from moto import mock_aws

import inference
from config import PlatformConfig, load_config
from scripts import smoke_test
from scripts.smoke_test import SmokeTest, Targets
from tests.conftest import Synthesized, resources_of_type

REGION = "eu-west-1"
PROD = smoke_test.targets("churn", load_config().environment("prod"))
CHAMPION = "arn:aws:sagemaker:eu-west-1:444444444444:model-package/churn-prod/7"


class Clock:
    """perf_counter for the smoke test: time passes only while the endpoint answers."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class World:
    def __init__(self, targets: Targets) -> None:
        self.targets = targets
        self.ssm = boto3.client("ssm", region_name=REGION)
        self.sagemaker = boto3.client("sagemaker", region_name=REGION)
        self.runtime = boto3.client("sagemaker-runtime", region_name=REGION)
        self.control = Stubber(self.sagemaker)
        self.invocations = Stubber(self.runtime)
        self.clock = Clock()
        self.slept: list[float] = []
        self.latencies: list[float] = []  # seconds each invocation takes, in order (default 0.02)
        # Before the Stubber's own before-call handler, which answers and ends the call.
        self.runtime.meta.events.register_first("before-call.*.*", self._takes_time)
        for variant, name in targets.parameters.items():
            self.ssm.put_parameter(Name=name, Value=CHAMPION if variant == targets.champion else "none", Type="String")

    def _takes_time(self, model: Any, **kwargs: Any) -> None:
        if model.name == "InvokeEndpoint":
            self.clock.now += self.latencies.pop(0) if self.latencies else 0.02

    def smoke_test(self, latency_ms: float = 1000.0, rows: int = 3) -> SmokeTest:
        return SmokeTest(
            self.targets,
            sagemaker=self.sagemaker,
            runtime=self.runtime,
            ssm=self.ssm,
            latency_budget_ms=latency_ms,
            rows=rows,
            clock=self.clock,
            sleep=self.slept.append,
        )

    def healthy_control_plane(self, endpoint_statuses: tuple[str, ...] = ("InService",)) -> None:
        for name in self.targets.pipelines:
            self.control.add_response(
                "describe_pipeline",
                {"PipelineArn": f"arn:aws:sagemaker:{REGION}:444444444444:pipeline/{name}", "PipelineStatus": "Active"},
                {"PipelineName": name},
            )
        self.control.add_response(
            "describe_feature_group",
            {
                "FeatureGroupArn": f"arn:aws:sagemaker:{REGION}:444444444444:feature-group/{self.targets.feature_group}",
                "FeatureGroupName": self.targets.feature_group,
                "RecordIdentifierFeatureName": "customer_id",
                "EventTimeFeatureName": "event_time",
                "FeatureDefinitions": [{"FeatureName": "customer_id", "FeatureType": "String"}],
                "CreationTime": "2026-01-01T00:00:00Z",
                "OfflineStoreConfig": {"S3StorageConfig": {"S3Uri": "s3://churn-prod-features/offline-store"}},
                "FeatureGroupStatus": "Created",
                "OfflineStoreStatus": {"Status": "Active"},
                "NextToken": "",
            },
            {"FeatureGroupName": self.targets.feature_group},
        )
        for status in endpoint_statuses:
            self.endpoint(status)

    def endpoint(self, status: str) -> None:
        self.control.add_response(
            "describe_endpoint",
            {
                "EndpointName": self.targets.endpoint,
                "EndpointArn": f"arn:aws:sagemaker:{REGION}:444444444444:endpoint/{self.targets.endpoint}",
                "EndpointConfigName": "EndpointConfig-1",
                "ProductionVariants": [{"VariantName": v} for v in ("Champion", "Challenger")],
                "EndpointStatus": status,
                "CreationTime": "2026-01-01T00:00:00Z",
                "LastModifiedTime": "2026-01-01T00:00:00Z",
            },
            {"EndpointName": self.targets.endpoint},
        )

    def answer(self, variant: str, body: bytes) -> None:
        self.invocations.add_response(
            "invoke_endpoint",
            {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": "text/csv"},
            {
                "EndpointName": self.targets.endpoint,
                "TargetVariant": variant,
                "ContentType": "text/csv",
                "Accept": "text/csv",
                "Body": ANY,
            },
        )

    def fail(self, code: str, status: int, **modeled: Any) -> None:
        self.invocations.add_client_error(
            "invoke_endpoint", code, "failed", http_status_code=status, modeled_fields=modeled
        )

    def healthy_variant(self, variant: str, rows: int = 3) -> None:
        good = b"".join(b"%.6f\n" % (0.1 * (i + 1)) for i in range(rows))
        self.answer(variant, good)  # warm-up
        self.answer(variant, good)
        self.fail("ModelError", 424, OriginalStatusCode=400, OriginalMessage="line 1 (tenure): not a number")


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        state = World(PROD)
        with state.control, state.invocations:
            yield state


def failures(results: list[smoke_test.Result]) -> list[str]:
    return [r.line() for r in results if not r.passed]


def test_a_healthy_environment_passes(world: World) -> None:
    world.healthy_control_plane()
    world.healthy_variant("Champion")
    world.healthy_variant("Challenger")
    results = world.smoke_test().run()
    assert failures(results) == []
    assert [r.check for r in results] == [
        "pipelines",
        "feature group",
        "endpoint",
        "Champion answers",
        "Champion refuses a malformed row",
        "Challenger answers",
        "Challenger refuses a malformed row",
    ]
    world.control.assert_no_pending_responses()
    world.invocations.assert_no_pending_responses()


def test_a_wrong_answer_fails_and_says_which_row(world: World) -> None:
    world.healthy_control_plane()
    world.answer("Champion", b"0.1\n0.2\n0.3\n")
    world.answer("Champion", b"0.12\n1.7\n0.3\n")  # a score, not a probability
    world.fail("ModelError", 424, OriginalStatusCode=400)
    world.healthy_variant("Challenger")
    assert failures(world.smoke_test().run()) == [
        "FAIL Champion answers: row 2 answered '1.7': not a probability in [0, 1]"
    ]


def test_too_few_answers_fail(world: World) -> None:
    world.healthy_control_plane()
    world.answer("Champion", b"0.1\n0.2\n0.3\n")
    world.answer("Champion", b"0.1\n")
    world.fail("ModelError", 424, OriginalStatusCode=400)
    world.healthy_variant("Challenger")
    (failure,) = failures(world.smoke_test().run())
    assert failure.startswith("FAIL Champion answers: 1 answers for 3 rows")


def test_a_slow_answer_fails_with_its_latency_and_the_budget(world: World) -> None:
    world.healthy_control_plane()
    world.healthy_variant("Champion")
    world.healthy_variant("Challenger")
    world.latencies = [4.0, 2.5]  # the warm-up may be slow (a cold start); the timed answer may not
    assert failures(world.smoke_test(latency_ms=1000).run()) == [
        "FAIL Champion answers: answered 3 rows in 2500 ms, above the 1000 ms budget"
    ]


def test_a_5xx_from_the_model_fails(world: World) -> None:
    world.healthy_control_plane()
    world.answer("Champion", b"0.1\n0.2\n0.3\n")
    world.fail("ModelError", 424, OriginalStatusCode=500, OriginalMessage="Internal Server Error: out of memory")
    world.fail("ModelError", 424, OriginalStatusCode=400)
    world.healthy_variant("Challenger")
    assert failures(world.smoke_test().run()) == [
        (
            "FAIL Champion answers: churn-prod failed sample rows: HTTP 500 from the model: Internal Server "
            "Error: out of memory"
        )
    ]


def test_a_5xx_from_sagemaker_fails(world: World) -> None:
    world.healthy_control_plane()
    world.fail("ServiceUnavailable", 503)
    world.fail("ModelError", 424, OriginalStatusCode=400)
    world.healthy_variant("Challenger")
    (failure,) = failures(world.smoke_test().run())
    assert failure.startswith("FAIL Champion answers: churn-prod failed sample rows: ServiceUnavailable (HTTP 503)")


def test_a_malformed_row_must_be_answered_with_400(world: World) -> None:
    world.healthy_control_plane()
    world.answer("Champion", b"0.1\n0.2\n0.3\n")
    world.answer("Champion", b"0.1\n0.2\n0.3\n")
    world.answer("Champion", b"0.5\n")  # the malformed row was scored
    world.answer("Challenger", b"0.1\n0.2\n0.3\n")
    world.answer("Challenger", b"0.1\n0.2\n0.3\n")
    world.fail("ModelError", 424, OriginalStatusCode=500, OriginalMessage="could not convert string to float")
    assert failures(world.smoke_test().run()) == [
        "FAIL Champion refuses a malformed row: expected HTTP 400 for 'not-a-number,1,2', but it was answered",
        (
            "FAIL Challenger refuses a malformed row: expected HTTP 400, got HTTP 500 from the model: could not "
            "convert string to float"
        ),
    ]


def test_a_missing_pipeline_and_an_inactive_feature_group_fail(world: World) -> None:
    for name in world.targets.pipelines[:-1]:
        world.control.add_response("describe_pipeline", {"PipelineStatus": "Active"}, {"PipelineName": name})
    world.control.add_client_error(
        "describe_pipeline", "ValidationException", f"Could not find pipeline with PipelineName {PROD.pipelines[-1]}."
    )
    world.control.add_response(
        "describe_feature_group",
        {
            "FeatureGroupArn": "arn:aws:sagemaker:eu-west-1:444444444444:feature-group/x",
            "FeatureGroupName": world.targets.feature_group,
            "RecordIdentifierFeatureName": "customer_id",
            "EventTimeFeatureName": "event_time",
            "FeatureDefinitions": [{"FeatureName": "customer_id", "FeatureType": "String"}],
            "CreationTime": "2026-01-01T00:00:00Z",
            "FeatureGroupStatus": "CreateFailed",
            "FailureReason": "the offline store bucket is not encrypted",
            "NextToken": "",
        },
        {"FeatureGroupName": world.targets.feature_group},
    )
    world.endpoint("InService")
    world.healthy_variant("Champion")
    world.healthy_variant("Challenger")
    assert failures(world.smoke_test().run()) == [
        f"FAIL pipelines: {PROD.pipelines[-1]} is missing (ValidationException)",
        (
            f"FAIL feature group: {PROD.feature_group} is CreateFailed, not Created: the offline store bucket is "
            "not encrypted"
        ),
    ]


def test_an_updating_endpoint_is_waited_for(world: World) -> None:
    world.healthy_control_plane(endpoint_statuses=("Updating", "Updating", "InService"))
    world.healthy_variant("Champion")
    world.healthy_variant("Challenger")
    assert failures(world.smoke_test().run()) == []
    assert world.slept == [smoke_test.POLL_SECONDS] * 2


def test_an_approved_champion_without_a_working_endpoint_fails(world: World) -> None:
    world.healthy_control_plane(endpoint_statuses=())
    world.control.add_client_error("describe_endpoint", "ValidationException", "Could not find endpoint")
    assert failures(world.smoke_test().run()) == [
        f"FAIL endpoint: churn-prod does not exist although {CHAMPION} is approved for Champion"
    ]


def test_without_an_approved_champion_the_endpoint_is_not_tested(world: World) -> None:
    world.ssm.put_parameter(Name=PROD.parameters["Champion"], Value="none", Type="String", Overwrite=True)
    world.healthy_control_plane(endpoint_statuses=())
    results = world.smoke_test().run()
    assert failures(results) == []
    assert results[-1].line() == "PASS endpoint: no Champion model approved yet: no endpoint to test"


def test_main_prints_every_check_and_exits_1_on_a_failure(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world.healthy_control_plane()
    world.healthy_variant("Champion", rows=5)
    world.answer("Challenger", b"0.1\n0.2\n0.3\n0.4\n0.5\n")
    world.answer("Challenger", b"nan\n0.2\n0.3\n0.4\n0.5\n")
    world.fail("ModelError", 424, OriginalStatusCode=400)
    monkeypatch.setattr(
        smoke_test,
        "clients",
        lambda env, role: {"sagemaker": world.sagemaker, "runtime": world.runtime, "ssm": world.ssm},
    )
    assert smoke_test.main(["--env", "prod", "--rows", "5"]) == 1
    out = capsys.readouterr().out
    assert "PASS pipelines:" in out
    assert "FAIL Challenger answers: row 1 answered 'nan': not a probability in [0, 1]" in out
    assert out.rstrip().endswith("6 passed, 1 failed")


def test_main_refuses_an_unknown_environment(capsys: pytest.CaptureFixture[str]) -> None:
    assert smoke_test.main(["--env", "qa"]) == 2
    assert "unknown environment" in capsys.readouterr().err


def test_the_sample_rows_are_what_the_serving_code_answers(serving_model_dir: Path) -> None:
    """The rows the smoke test sends are valid for the model (one probability each), and its malformed row
    is what the serving code answers with 400: both sides of the contract, without an endpoint."""
    model = inference.model_fn(serving_model_dir)
    body = smoke_test.to_csv(smoke_test.sample_rows(10)).encode()
    scores = inference.predict_fn(inference.input_fn(body, "text/csv", model), model)
    answer, _ = inference.output_fn(scores, "text/csv")
    assert [0.0 <= float(line) <= 1.0 for line in answer.decode().split()] == [True] * 10
    with pytest.raises(inference.RequestError) as refused:
        inference.input_fn(smoke_test.MALFORMED_ROW.encode(), "text/csv", model)
    assert refused.value.status == 400


@pytest.mark.slow
@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_the_smoke_test_checks_what_the_templates_deploy(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    targets = smoke_test.targets(platform_config.project, platform_config.environment(env))
    pipelines = sorted(
        p["Properties"]["PipelineName"]
        for stack in ("Training", "Serving")
        for p in resources_of_type(synthesized.template(env, stack), "AWS::SageMaker::Pipeline").values()
    )
    assert sorted(targets.pipelines) == pipelines
    (group,) = resources_of_type(synthesized.template(env, "Data"), "AWS::SageMaker::FeatureGroup").values()
    assert targets.feature_group == group["Properties"]["FeatureGroupName"]
    serving = synthesized.template(env, "Serving")
    assert {k: v["Default"] for k, v in serving["Parameters"].items() if k.endswith("ModelPackageArn")} == {
        f"{variant}ModelPackageArn": name for variant, name in targets.parameters.items()
    }
    endpoints = resources_of_type(serving, "AWS::SageMaker::Endpoint").values()
    assert [e["Properties"]["EndpointName"] for e in endpoints] == [targets.endpoint]
    # The smoke-test role may do exactly what the smoke test does, on these names.
    role_policy = next(
        p["Properties"]["PolicyDocument"]["Statement"]
        for k, p in resources_of_type(synthesized.template(env, "Deployment"), "AWS::IAM::ManagedPolicy").items()
        if k.startswith("SmokeTestAccess")
    )
    actions = sorted(a for s in role_policy for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))
    assert actions == sorted(
        [
            "sagemaker:DescribePipeline",
            "sagemaker:DescribeFeatureGroup",
            "sagemaker:DescribeEndpoint",
            "sagemaker:InvokeEndpoint",
            "ssm:GetParameter",
        ]
    )
