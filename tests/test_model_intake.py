"""The model intake: staging's approved model becomes prod's pending one, byte for byte, or nothing.

S3, the model registry, ECR and SNS run on moto (one moto account plays both: the function's logic
does not depend on the accounts differing, and IAM is tested on the templates).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.sns.models import sns_backends

import model_intake

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's default account
SOURCE_BUCKETS = {p: f"churn-staging-{p}-{ACCOUNT}-{REGION}" for p in ("models", "processed", "monitoring")}
TARGET_BUCKETS = {p: f"churn-prod-{p}-{ACCOUNT}-{REGION}" for p in ("models", "processed", "monitoring")}
SOURCE_REPOSITORY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/cdk-hnb659fds-container-assets-{ACCOUNT}-{REGION}"
TARGET_REPOSITORY_NAME = f"cdk-hnb659fds-container-assets-{ACCOUNT}-{REGION}"
TAG = "3f2a" * 16  # CDK tags image assets with their content hash
MODEL = b"\x1f\x8b" + bytes(range(256)) * 40  # stands in for model.tar.gz
EXECUTION = "pipelines-abc123"
URIS = {
    "model": f"s3://{SOURCE_BUCKETS['models']}/pipelines/churn-staging-training/{EXECUTION}-Train/output/model.tar.gz",
    "evaluation": f"s3://{SOURCE_BUCKETS['processed']}/pipelines/churn-staging-training/{EXECUTION}/evaluation/"
    "evaluation.json",
    "statistics": f"s3://{SOURCE_BUCKETS['monitoring']}/baselines/churn-staging-training/{EXECUTION}/statistics.json",
    "constraints": f"s3://{SOURCE_BUCKETS['monitoring']}/baselines/churn-staging-training/{EXECUTION}/constraints.json",
}
CONTENT = {
    "model": MODEL,
    "evaluation": b'{"binary_classification_metrics": {"auc": {"value": 0.91}}}',
    "statistics": b'{"version": 0.0, "features": []}',
    "constraints": b'{"version": 0.0, "features": []}',
}


class World:
    def __init__(self) -> None:
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sagemaker = boto3.client("sagemaker", region_name=REGION)
        self.ecr = boto3.client("ecr", region_name=REGION)
        self.sns = boto3.client("sns", region_name=REGION)
        self.topic = self.sns.create_topic(Name="alerts")["TopicArn"]
        for bucket in [*SOURCE_BUCKETS.values(), *TARGET_BUCKETS.values()]:
            self.s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        for name, uri in URIS.items():
            bucket, key = uri[5:].split("/", 1)
            self.s3.put_object(Bucket=bucket, Key=key, Body=CONTENT[name])
        for group in ("churn-staging", "churn-prod"):
            self.sagemaker.create_model_package_group(ModelPackageGroupName=group)
        self.ecr.create_repository(repositoryName=TARGET_REPOSITORY_NAME)
        self.s3_client: Any = self.s3

    def client(self, service: str) -> Any:
        return {"s3": self.s3_client, "sagemaker": self.sagemaker, "ecr": self.ecr, "sns": self.sns}[service]

    def publish_image(self) -> str:
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"digest": "sha256:" + "1" * 64},
            }
        )
        self.ecr.put_image(repositoryName=TARGET_REPOSITORY_NAME, imageManifest=manifest, imageTag=TAG)
        (image,) = self.ecr.describe_images(repositoryName=TARGET_REPOSITORY_NAME)["imageDetails"]
        return str(image["imageDigest"])

    def approve_in_source(self, *, image_digest: str | None = None, metadata: dict[str, str] | None = None) -> str:
        container: dict[str, Any] = {
            "Image": f"{SOURCE_REPOSITORY}:{TAG}",
            "ModelDataUrl": URIS["model"],
            "Framework": "XGBOOST",
        }
        if image_digest:
            container["ImageDigest"] = image_digest
        arn = self.sagemaker.create_model_package(
            ModelPackageGroupName="churn-staging",
            ModelPackageDescription="Churn XGBoost model",
            ModelApprovalStatus="Approved",
            InferenceSpecification={
                "Containers": [container],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
            ModelMetrics={
                "ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": URIS["evaluation"]}}
            },
            DriftCheckBaselines={
                "ModelDataQuality": {
                    "Statistics": {"ContentType": "application/json", "S3Uri": URIS["statistics"]},
                    "Constraints": {"ContentType": "application/json", "S3Uri": URIS["constraints"]},
                }
            },
            CustomerMetadataProperties={"Variant": "Challenger", **(metadata or {})},
        )["ModelPackageArn"]
        return str(arn)

    def prod_packages(self) -> list[dict[str, Any]]:
        summaries = self.sagemaker.list_model_packages(ModelPackageGroupName="churn-prod")["ModelPackageSummaryList"]
        return [self.sagemaker.describe_model_package(ModelPackageName=s["ModelPackageArn"]) for s in summaries]

    def read(self, uri: str) -> bytes:
        bucket, key = uri[5:].split("/", 1)
        return bytes(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    def promoted_objects(self) -> list[str]:
        found = []
        for bucket in TARGET_BUCKETS.values():
            found += [o["Key"] for o in self.s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        return found

    def alerts(self) -> list[str]:
        topic = sns_backends[ACCOUNT][REGION].topics[self.topic]
        return [message for _, message, *_ in topic.sent_notifications]


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        state = World()
        monkeypatch.setattr(model_intake, "client", state.client)
        monkeypatch.setattr(
            model_intake,
            "settings",
            lambda: model_intake.Settings(
                {
                    "ENVIRONMENT": "prod",
                    "SOURCE_ENVIRONMENT": "staging",
                    "SOURCE_ACCOUNT": ACCOUNT,
                    "SOURCE_GROUP": "churn-staging",
                    "SOURCE_PACKAGE_ARN_PREFIX": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/churn-staging/",
                    "MODEL_PACKAGE_GROUP": "churn-prod",
                    "BUCKETS": json.dumps(
                        {
                            SOURCE_BUCKETS["models"]: {
                                "bucket": TARGET_BUCKETS["models"],
                                "prefix": "pipelines/promoted/churn-staging/",
                            },
                            SOURCE_BUCKETS["processed"]: {
                                "bucket": TARGET_BUCKETS["processed"],
                                "prefix": "pipelines/promoted/churn-staging/",
                            },
                            SOURCE_BUCKETS["monitoring"]: {
                                "bucket": TARGET_BUCKETS["monitoring"],
                                "prefix": "baselines/promoted/churn-staging/",
                            },
                        }
                    ),
                    "SOURCE_IMAGE_REPOSITORY": SOURCE_REPOSITORY,
                    "IMAGE_REPOSITORY": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{TARGET_REPOSITORY_NAME}",
                    "ALERT_TOPIC_ARN": state.topic,
                }
            ),
        )
        yield state


def approval(arn: str, status: str = "Approved", group: str = "churn-staging") -> dict[str, Any]:
    return {
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Model Package State Change",
        "account": ACCOUNT,
        "region": REGION,
        "detail": {"ModelPackageGroupName": group, "ModelPackageArn": arn, "ModelApprovalStatus": status},
    }


def test_an_approval_in_staging_registers_the_same_model_in_prod_pending_approval(world: World) -> None:
    digest = world.publish_image()
    source = world.approve_in_source(image_digest=digest)
    result = model_intake.handler(approval(source), None)
    assert result["status"] == "registered"
    (copy,) = world.prod_packages()
    assert copy["ModelPackageArn"] == result["copy"]
    assert copy["ModelApprovalStatus"] == "PendingManualApproval"  # prod's own approval deploys it
    (container,) = copy["InferenceSpecification"]["Containers"]
    # The same artifact bytes, checked by digest, under the prefix prod's serving role reads.
    assert container["ModelDataUrl"] == (
        f"s3://{TARGET_BUCKETS['models']}/pipelines/promoted/churn-staging/1/model.tar.gz"
    )
    assert world.read(container["ModelDataUrl"]) == MODEL
    sha256 = hashlib.sha256(MODEL).hexdigest()
    assert copy["CustomerMetadataProperties"] == {
        "Variant": "Challenger",  # the variant travels with the model
        "SourceModelPackageArn": source,
        "SourceEnvironment": "staging",
        "ModelDataSha256": sha256,
    }
    # The same image, from prod's own repository (the delivery pipeline published it there).
    assert container["Image"] == f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{TARGET_REPOSITORY_NAME}:{TAG}"
    # Its evaluation and its baselines come along.
    evaluation = copy["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    assert evaluation == (f"s3://{TARGET_BUCKETS['processed']}/pipelines/promoted/churn-staging/1/evaluation.json")
    assert world.read(evaluation) == CONTENT["evaluation"]
    baselines = copy["DriftCheckBaselines"]["ModelDataQuality"]
    assert world.read(baselines["Statistics"]["S3Uri"]) == CONTENT["statistics"]
    assert world.read(baselines["Constraints"]["S3Uri"]) == CONTENT["constraints"]
    assert baselines["Constraints"]["S3Uri"].startswith(f"s3://{TARGET_BUCKETS['monitoring']}/baselines/promoted/")
    (message,) = world.alerts()
    assert "waits for approval" in message
    assert result["copy"] in message


def test_the_same_approval_twice_registers_one_copy(world: World) -> None:
    world.publish_image()
    source = world.approve_in_source()
    first = model_intake.handler(approval(source), None)
    second = model_intake.handler(approval(source), None)
    assert second == {"status": "exists", "copy": first["copy"]}
    assert len(world.prod_packages()) == 1


class CorruptingS3:
    """S3 as seen through a faulty network: one bit of every uploaded object flips on the way."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put_object(self, **kwargs: Any) -> Any:
        body = kwargs["Body"].read()
        kwargs["Body"] = body[:-1] + bytes([body[-1] ^ 1])
        return self.inner.put_object(**kwargs)


def test_a_copy_whose_digest_differs_from_the_source_is_refused(world: World) -> None:
    world.publish_image()
    source = world.approve_in_source()
    world.s3_client = CorruptingS3(world.s3)
    result = model_intake.handler(approval(source), None)
    assert result["status"] == "refused"
    assert "SHA-256" in result["reason"]
    assert world.prod_packages() == []  # nothing registered
    assert world.promoted_objects() == []  # the partial copy is gone
    (message,) = world.alerts()
    assert f"{source}, approved in staging, was NOT registered in prod" in message
    assert hashlib.sha256(MODEL).hexdigest() in message


class RefusingS3(CorruptingS3):
    """Real S3 checks the SHA-256 sent with an upload and refuses bytes that differ (BadDigest)."""

    def put_object(self, **kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "BadDigest", "Message": "checksum mismatch"}}, "PutObject")


def test_a_copy_s3_refuses_for_its_checksum_is_refused(world: World) -> None:
    world.publish_image()
    source = world.approve_in_source()
    world.s3_client = RefusingS3(world.s3)
    result = model_intake.handler(approval(source), None)
    assert result["status"] == "refused"
    assert "BadDigest" in result["reason"]
    assert world.prod_packages() == []


def test_bytes_that_differ_from_the_digest_the_package_records_are_refused(world: World) -> None:
    world.publish_image()
    source = world.approve_in_source(metadata={"ModelDataSha256": hashlib.sha256(b"another model").hexdigest()})
    result = model_intake.handler(approval(source), None)
    assert result["status"] == "refused"
    assert "the bytes changed after registration" in result["reason"]
    assert world.prod_packages() == []
    assert world.promoted_objects() == []


def test_an_image_prod_does_not_have_is_refused(world: World) -> None:
    source = world.approve_in_source()  # the delivery pipeline has not published the image to prod yet
    result = model_intake.handler(approval(source), None)
    assert result["status"] == "refused"
    assert f"serving image {TAG} is not in prod's repository" in result["reason"]
    assert world.prod_packages() == []


def test_an_image_with_another_digest_is_refused(world: World) -> None:
    world.publish_image()
    source = world.approve_in_source(image_digest="sha256:" + "9" * 64)
    result = model_intake.handler(approval(source), None)
    assert result["status"] == "refused"
    assert "different images under one tag" in result["reason"]


def test_an_artifact_outside_the_source_buckets_is_refused(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.publish_image()
    source = world.approve_in_source()
    outside = "s3://someone-elses-bucket/model.tar.gz"
    original = world.sagemaker.describe_model_package

    def describe(**kwargs: Any) -> Any:
        package = original(**kwargs)
        package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] = outside
        return package

    monkeypatch.setattr(world.sagemaker, "describe_model_package", describe)
    result = model_intake.handler(approval(source), None)
    assert result["status"] == "refused"
    assert f"{outside} is outside the staging buckets" in result["reason"]


@pytest.mark.parametrize("status", ["PendingManualApproval", "Rejected"])
def test_pending_and_rejected_packages_are_not_promoted(world: World, status: str) -> None:
    source = world.approve_in_source()
    assert model_intake.handler(approval(source, status=status), None) == {"status": "ignored"}
    assert world.prod_packages() == []


def test_packages_of_other_groups_are_not_promoted(world: World) -> None:
    other = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/churn-dev/1"
    assert model_intake.handler(approval(other, group="churn-dev"), None) == {"status": "ignored"}
    assert world.prod_packages() == []
