"""Logical IDs of stateful resources are a contract: a changed ID makes CloudFormation replace the
resource, which for a bucket or a key means data loss. Renaming one of these needs a migration plan,
not a test update. (A feature group's name is pinned too: config/feature_groups.lock.json and the
replacement guard.)"""

from __future__ import annotations

import pytest

from tests.conftest import Synthesized

STATEFUL_TYPES = (
    "AWS::KMS::Key",
    "AWS::S3::Bucket",
    "AWS::SageMaker::ModelPackageGroup",
    "AWS::Logs::LogGroup",
    "AWS::EC2::VPC",
    "AWS::SageMaker::FeatureGroup",
    "AWS::Glue::Database",
)

PINNED = {
    "Data": {
        "DataKey17AFBB84": "AWS::KMS::Key",
        "ModelKey797AAF76": "AWS::KMS::Key",
        "LogsKeyA6AB43B2": "AWS::KMS::Key",
        "AccessLogsBucket83982689": "AWS::S3::Bucket",
        "RawDataBucket57F26C03": "AWS::S3::Bucket",
        "ProcessedDataBucket4E25D3B7": "AWS::S3::Bucket",
        "FeatureStoreBucket36D0BEC9": "AWS::S3::Bucket",
        "ModelArtifactsBucket80ACAD84": "AWS::S3::Bucket",
        "DataCaptureBucket729F772E": "AWS::S3::Bucket",
        "MonitoringReportsBucketE083C811": "AWS::S3::Bucket",
        "ModelRegistryGroupC87F7ECA": "AWS::SageMaker::ModelPackageGroup",
        "FeatureStoreFeatureGroupCE1132D9": "AWS::SageMaker::FeatureGroup",
        "FeatureStoreDatabaseB844F633": "AWS::Glue::Database",
    },
    "Network": {
        "NetworkVpc7FB7348F": "AWS::EC2::VPC",
        "NetworkFlowLogGroup4F8CEEEF": "AWS::Logs::LogGroup",
    },
}


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
@pytest.mark.parametrize("stack", sorted(PINNED))
def test_stateful_logical_ids_never_change(synthesized: Synthesized, env: str, stack: str) -> None:
    resources = synthesized.template(env, stack)["Resources"]
    stateful = {logical_id: r["Type"] for logical_id, r in resources.items() if r["Type"] in STATEFUL_TYPES}
    assert stateful == PINNED[stack]
