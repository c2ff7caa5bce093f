"""Security and lifecycle properties of the stateful data stack, per environment."""

from __future__ import annotations

from typing import Any

import pytest

from config import PlatformConfig
from tests.conftest import Synthesized, resources_of_type

ENVS = ("dev", "staging", "prod")
DATA_BUCKETS = (
    "RawDataBucket",
    "ProcessedDataBucket",
    "FeatureStoreBucket",
    "ModelArtifactsBucket",
    "DataCaptureBucket",
    "MonitoringReportsBucket",
)


def buckets(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Buckets by construct id (the logical ID without its hash)."""
    return {logical_id[:-8]: r for logical_id, r in resources_of_type(template, "AWS::S3::Bucket").items()}


def ref_id(template: dict[str, Any], construct_id: str) -> str:
    (logical_id,) = [str(k) for k in template["Resources"] if k[:-8] == construct_id]
    return logical_id


@pytest.mark.parametrize("env", ENVS)
def test_keys_rotate_and_each_domain_has_its_own(synthesized: Synthesized, env: str) -> None:
    template = synthesized.template(env, "Data")
    keys = resources_of_type(template, "AWS::KMS::Key")
    assert sorted(k[:-8] for k in keys) == ["DataKey", "LogsKey", "ModelKey"]
    for key in keys.values():
        assert key["Properties"]["EnableKeyRotation"] is True
        assert key["Properties"]["RotationPeriodInDays"] == 365
    aliases = sorted(a["Properties"]["AliasName"] for a in resources_of_type(template, "AWS::KMS::Alias").values())
    assert aliases == [f"alias/churn/{env}/{domain}" for domain in ("data", "logs", "model")]


@pytest.mark.parametrize("env", ENVS)
def test_logs_key_admits_cloudwatch_logs_of_this_account_only(
    synthesized: Synthesized, platform_config: PlatformConfig, env: str
) -> None:
    settings = platform_config.environment(env)
    template = synthesized.template(env, "Data")
    policy = template["Resources"][ref_id(template, "LogsKey")]["Properties"]["KeyPolicy"]
    statement = next(s for s in policy["Statement"] if s.get("Sid") == "AllowCloudWatchLogsOfThisAccount")
    assert statement["Principal"] == {"Service": f"logs.{settings.region}.amazonaws.com"}
    condition = statement["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    assert f":logs:{settings.region}:{settings.account}:log-group:*" in str(condition)
    # The data and model keys admit no service principal at all: use goes through IAM grants. Where
    # models are promoted from, the receiving environment's model intake may decrypt through S3 only.
    promotion = platform_config.promotion
    receiver = (
        platform_config.environment(promotion.promote_models_to)
        if promotion is not None and promotion.promote_models_from == env
        else None
    )
    for name in ("DataKey", "ModelKey"):
        statements = template["Resources"][ref_id(template, name)]["Properties"]["KeyPolicy"]["Statement"]
        assert [s["Principal"] for s in statements] == [{"AWS": f"arn:aws:iam::{settings.account}:root"}] + (
            [{"AWS": f"arn:aws:iam::{receiver.account}:root"}] if receiver else []
        )
        if receiver:
            assert statements[1]["Action"] == "kms:Decrypt"
            assert statements[1]["Condition"]["StringEquals"] == {
                "kms:ViaService": f"s3.{settings.region}.amazonaws.com"
            }


@pytest.mark.parametrize("env", ENVS)
def test_data_buckets_are_private_encrypted_versioned_and_logged(synthesized: Synthesized, env: str) -> None:
    template = synthesized.template(env, "Data")
    found = buckets(template)
    assert sorted(found) == sorted([*DATA_BUCKETS, "AccessLogsBucket"])
    log_bucket = ref_id(template, "AccessLogsBucket")
    model_key, data_key = ref_id(template, "ModelKey"), ref_id(template, "DataKey")
    for name in DATA_BUCKETS:
        props = found[name]["Properties"]
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["BucketKeyEnabled"] is True
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
        expected_key = model_key if name == "ModelArtifactsBucket" else data_key
        assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {"Fn::GetAtt": [expected_key, "Arn"]}
        assert props["LoggingConfiguration"] == {
            "DestinationBucketName": {"Ref": log_bucket},
            "LogFilePrefix": f"{name}/",
        }
    for name, bucket in found.items():
        props = bucket["Properties"]
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, name
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, name
        assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}, name
    # Server access logs can only be delivered to SSE-S3 buckets.
    (log_rule,) = found["AccessLogsBucket"]["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert log_rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}


@pytest.mark.parametrize("env", ENVS)
def test_every_bucket_refuses_plain_http_and_old_tls(synthesized: Synthesized, env: str) -> None:
    template = synthesized.template(env, "Data")
    policies = {
        p["Properties"]["Bucket"]["Ref"]: p["Properties"]["PolicyDocument"]["Statement"]
        for p in resources_of_type(template, "AWS::S3::BucketPolicy").values()
    }
    assert set(policies) == set(resources_of_type(template, "AWS::S3::Bucket"))
    for bucket, statements in policies.items():
        denies = [s["Condition"] for s in statements if s["Effect"] == "Deny"]
        assert {"Bool": {"aws:SecureTransport": "false"}} in denies, bucket
        assert {"NumericLessThan": {"s3:TlsVersion": 1.2}} in denies, bucket


@pytest.mark.parametrize("env", ENVS)
def test_lifecycle_rules_follow_config(synthesized: Synthesized, platform_config: PlatformConfig, env: str) -> None:
    days = platform_config.environment(env).data
    found = buckets(synthesized.template(env, "Data"))
    expiry = {
        "DataCaptureBucket": days.capture_expiry_days,
        "MonitoringReportsBucket": days.monitoring_report_expiry_days,
        "AccessLogsBucket": days.access_log_expiry_days,
    }
    for name, bucket in found.items():
        rules = {r["Id"]: r for r in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}
        assert rules["ExpireNoncurrentVersions"]["NoncurrentVersionExpiration"] == {
            "NoncurrentDays": days.noncurrent_version_expiry_days
        }
        assert rules["AbortIncompleteUploads"]["AbortIncompleteMultipartUpload"] == {
            "DaysAfterInitiation": days.incomplete_upload_expiry_days
        }
        if name in expiry:
            assert rules["ExpireObjects"]["ExpirationInDays"] == expiry[name], name
            assert rules["RemoveExpiredDeleteMarkers"]["ExpiredObjectDeleteMarker"] is True
        else:
            assert "ExpireObjects" not in rules, f"{name} must keep its objects"


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_stateful_resources_are_retained_outside_dev(synthesized: Synthesized, env: str) -> None:
    template = synthesized.template(env, "Data")
    for kind in ("AWS::S3::Bucket", "AWS::KMS::Key", "AWS::SageMaker::ModelPackageGroup"):
        for logical_id, resource in resources_of_type(template, kind).items():
            assert resource["DeletionPolicy"] == "Retain", logical_id
            assert resource["UpdateReplacePolicy"] == "Retain", logical_id
    for key in resources_of_type(template, "AWS::KMS::Key").values():
        assert key["Properties"]["PendingWindowInDays"] == 30
    assert not resources_of_type(template, "Custom::S3AutoDeleteObjects")


def test_dev_deletes_and_empties_its_buckets_but_keeps_the_registry(synthesized: Synthesized) -> None:
    template = synthesized.template("dev", "Data")
    bucket_ids = set(resources_of_type(template, "AWS::S3::Bucket"))
    for logical_id in bucket_ids:
        assert template["Resources"][logical_id]["DeletionPolicy"] == "Delete"
    auto_delete = resources_of_type(template, "Custom::S3AutoDeleteObjects").values()
    assert {r["Properties"]["BucketName"]["Ref"] for r in auto_delete} == bucket_ids
    (group,) = resources_of_type(template, "AWS::SageMaker::ModelPackageGroup").values()
    assert group["DeletionPolicy"] == "Retain"
    assert group["Properties"]["ModelPackageGroupName"] == "churn-dev"
