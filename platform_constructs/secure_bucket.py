"""An S3 bucket with every control the platform requires, and nothing to forget."""

from __future__ import annotations

import typing
from collections.abc import Mapping

from aws_cdk import CfnResource, Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from policy.acknowledge import acknowledge_all, skip_checkov

# One reason, written once, for the finding every bucket raises in three packs.
_REPLICATION_RULES = (
    "HIPAA.Security-S3BucketReplicationEnabled",
    "NIST.800.53.R5-S3BucketReplicationEnabled",
    "PCI.DSS.321-S3BucketReplicationEnabled",
)
_REPLICATION_REASON = (
    "Single-region platform by decision (docs/decisions/0003-data-protection.md): versioning, "
    "RETAIN outside dev and KMS protect the data; cross-region replication is a disaster-recovery "
    "choice each operator makes per account."
)


def make_bucket_name(project: str, environment: str, purpose: str, account: str, region: str) -> str:
    """``<project>-<env>-<purpose>-<account>-<region>``: unique per account and region, at most 63 characters."""
    name = f"{project}-{environment}-{purpose}-{account}-{region}"
    if len(name) > 63:
        raise ValueError(f"bucket name {name!r} is longer than S3's 63 characters; shorten the project or purpose")
    return name


class SecureBucket(s3.Bucket):
    """A versioned, TLS-only, private bucket with SSE-KMS, access logs and lifecycle rules.

    The name is explicit (see :func:`make_bucket_name`): operators know where to put data, and IAM
    policies in other stacks name the bucket's ARN as a literal instead of a cross-stack reference.

    ``event_bridge=True`` sends the bucket's object events to EventBridge (retraining triggers).
    ``prefix_expiry`` expires the objects under each prefix after its duration (working data that only
    a running pipeline reads, spot checkpoints).
    Pass ``encryption_key=None`` only for the access-log bucket: S3 server access logging can
    deliver only to buckets encrypted with S3-managed keys. Pass ``access_logs_bucket=None`` only
    for the access-log bucket itself. Outside dev (``retain=True``) the bucket and its objects
    survive a stack deletion; in dev CDK empties and deletes it.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        bucket_name: str,
        encryption_key: kms.IKey | None,
        access_logs_bucket: s3.IBucket | None,
        retain: bool,
        noncurrent_version_expiry: Duration,
        incomplete_upload_expiry: Duration | None = None,
        object_expiry: Duration | None = None,
        event_bridge: bool = False,
        prefix_expiry: Mapping[str, Duration] | None = None,
    ) -> None:
        lifecycle_rules = [
            s3.LifecycleRule(
                id="ExpireNoncurrentVersions",
                noncurrent_version_expiration=noncurrent_version_expiry,
            ),
            s3.LifecycleRule(
                id="AbortIncompleteUploads",
                abort_incomplete_multipart_upload_after=incomplete_upload_expiry or Duration.days(7),
            ),
        ]
        # Objects under a prefix expire (working data, checkpoints); their old versions a day later.
        for index, (prefix, expiry) in enumerate(sorted((prefix_expiry or {}).items())):
            lifecycle_rules.append(
                s3.LifecycleRule(
                    id=f"ExpirePrefix{index}",
                    prefix=prefix,
                    expiration=expiry,
                    noncurrent_version_expiration=Duration.days(1),
                )
            )
        if object_expiry is not None:
            lifecycle_rules += [
                s3.LifecycleRule(id="ExpireObjects", expiration=object_expiry),
                s3.LifecycleRule(id="RemoveExpiredDeleteMarkers", expired_object_delete_marker=True),
            ]
        super().__init__(
            scope,
            id_,
            bucket_name=bucket_name,
            encryption=s3.BucketEncryption.KMS if encryption_key else s3.BucketEncryption.S3_MANAGED,
            encryption_key=encryption_key,
            bucket_key_enabled=encryption_key is not None,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            server_access_logs_bucket=access_logs_bucket,
            server_access_logs_prefix=f"{id_}/" if access_logs_bucket else None,
            lifecycle_rules=lifecycle_rules,
            removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
            auto_delete_objects=not retain,
        )
        if event_bridge:
            # S3's native EventBridge delivery (CDK's event_bridge_enabled adds a custom resource).
            typing.cast(s3.CfnBucket, self.node.default_child).add_property_override(
                "NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True
            )
        acknowledge_all(self, _REPLICATION_RULES, _REPLICATION_REASON)
        if access_logs_bucket is None:
            # cdk-nag exempts the log bucket itself; checkov does not.
            skip_checkov(
                typing.cast(CfnResource, self.node.default_child),
                "CKV_AWS_18",
                "This is the server-access-log bucket; logging it into itself would loop, and "
                "CloudTrail data events cover reads of it.",
            )
        if encryption_key is None:
            acknowledge_all(
                self,
                (
                    "HIPAA.Security-S3DefaultEncryptionKMS",
                    "NIST.800.53.R5-S3DefaultEncryptionKMS",
                    "PCI.DSS.321-S3DefaultEncryptionKMS",
                ),
                "S3 server access logging delivers only to buckets encrypted with S3-managed keys "
                "(SSE-S3); the logs hold request metadata, never object data.",
            )
