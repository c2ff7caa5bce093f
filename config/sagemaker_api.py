"""What the SageMaker API accepts, read offline from botocore's service model, and the instance facts
the API reference points at but does not list (which instance types have local NVMe storage).

Everything that decides "would SageMaker refuse this request?" goes through this module: the config
validation (``config.settings``), the pipeline definitions and endpoint constructs
(``volume_kms_key_for``), the deny guardrails (``LOCAL_STORAGE_PATTERNS``) and the SageMaker API rule
pack (``policy/sagemaker_api_rules.py``). botocore's data files ship with boto3 (a dependency of
``sagemaker-core``); they are read from disk, never from the network.
"""

from __future__ import annotations

import fnmatch
import gzip
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any, Literal, TypeVar

JobKind = Literal["training", "processing", "hosting", "transform"]

# The botocore shape that enumerates the instance types each kind of request accepts.
INSTANCE_TYPE_SHAPES: dict[JobKind, str] = {
    "training": "TrainingInstanceType",  # CreateTrainingJob / tuning ResourceConfig.InstanceType
    "processing": "ProcessingInstanceType",  # CreateProcessingJob, monitoring job ClusterConfig
    "hosting": "ProductionVariantInstanceType",  # CreateEndpointConfig ProductionVariants[].InstanceType
    "transform": "TransformInstanceType",  # CreateTransformJob TransformResources.InstanceType
}

# ResourceConfig, ProcessingClusterConfig and TransformResources, member VolumeKmsKeyId (botocore 1.44):
LOCAL_STORAGE_SENTENCE = "You can't request a VolumeKmsKeyId when using an instance type with local storage."
# CreateEndpointConfig, member KmsKeyId (API reference and the CloudFormation resource reference):
ENDPOINT_LOCAL_STORAGE_SENTENCE = (
    "If you specify a value for KmsKeyId when using any nitro-based instances with local storage, the call to "
    "CreateEndpointConfig fails."
)

# Instance families of the SageMaker instance-type enums by storage. Local storage: the instance has
# NVMe instance-store volumes, which SageMaker mounts instead of an EBS volume and which a hardware
# module on the instance encrypts. Source: Amazon EC2 instance types, "Instance store specifications"
# (docs.aws.amazon.com/ec2/latest/instancetypes/), and SageMaker's "Instance storage volumes"
# (docs.aws.amazon.com/sagemaker/latest/dg/host-instance-storage.html); recorded 2026-12-01.
# tests/test_sagemaker_api.py fails when botocore lists a family that is in neither tuple: classify it
# here before using it (an unclassified family is refused at synth).
LOCAL_STORAGE_FAMILIES = (
    "c5d",
    "c6gd",
    "dl1",
    "g4dn",
    "g5",
    "g6",
    "g6e",
    "g7e",
    "m5d",
    "m6gd",
    "p3dn",
    "p4d",
    "p4de",
    "p5",
    "p5e",
    "p5en",
    "p6-b200",
    "p6-b300",
    "p6e-gb200",
    "r5d",
    "r6gd",
    "r7gd",
    "trn1",
    "trn1n",
    "trn2",
)
EBS_ONLY_FAMILIES = (
    "c4",
    "c5",
    "c5n",
    "c6g",
    "c6gn",
    "c6i",
    "c6in",
    "c7g",
    "c7i",
    "c7i-flex",
    "c8g",
    "c8i",
    "c8i-flex",
    "inf1",
    "inf2",
    "m4",
    "m5",
    "m6g",
    "m6i",
    "m7i",
    "m7i-flex",
    "m8g",
    "m8i",
    "m8i-flex",
    "p2",
    "p3",
    "r5",
    "r6g",
    "r6i",
    "r7i",
    "r8g",
    "r8i",
    "r8i-flex",
    "t2",
    "t3",
)
# Listed by botocore, storage not yet confirmed from an AWS source: refused until classified.
UNCLASSIFIED_FAMILIES = ("g7",)

# sagemaker:InstanceTypes patterns of every local-storage family (the deny guardrails use them).
LOCAL_STORAGE_PATTERNS = tuple(f"ml.{family}.*" for family in LOCAL_STORAGE_FAMILIES)

_INSTANCE_TYPE = re.compile(r"^ml\.(?P<family>[a-z0-9-]+)\.(?P<size>[a-z0-9-]+)$")
_PATTERN = re.compile(r"^ml\.[a-z0-9-]+\.([a-z0-9-]+|\*)$")
_TAG = re.compile(r"<[^>]+>")
T = TypeVar("T")


class UnknownInstanceStorageError(ValueError):
    """An instance family whose storage (EBS or local NVMe) this project has not classified."""


@cache
def service_model() -> Mapping[str, Any]:
    """botocore's SageMaker service model (``service-2.json``), read as package data: botocore itself is
    not imported (synth imports no AWS SDK module), nothing reaches the network."""
    try:
        root = Path(str(distribution("botocore").locate_file("botocore/data/sagemaker")))
    except PackageNotFoundError:
        raise RuntimeError("botocore (installed with boto3 and sagemaker-core) is missing; run `make setup`") from None
    newest = max(path for path in root.iterdir() if path.is_dir())  # API versions are dates: 2017-07-24
    for name, opener in (("service-2.json.gz", gzip.open), ("service-2.json", open)):
        if (newest / name).exists():
            with opener(newest / name, "rt", encoding="utf-8") as handle:
                model: Mapping[str, Any] = json.load(handle)
            return model
    raise RuntimeError(f"no SageMaker service model under {newest}")


def shape(name: str) -> Mapping[str, Any]:
    shapes: Mapping[str, Any] = service_model()["shapes"]
    return shapes[name]  # type: ignore[no-any-return]


@cache
def instance_types(kind: JobKind) -> frozenset[str]:
    """Every instance type the API accepts for ``kind`` (the shape's enum)."""
    return frozenset(shape(INSTANCE_TYPE_SHAPES[kind])["enum"])


def family_of(instance_type: str) -> str:
    """``ml.g5.2xlarge`` -> ``g5``; ``ml.p6-b200.48xlarge`` -> ``p6-b200``."""
    match = _INSTANCE_TYPE.match(instance_type)
    if not match:
        raise ValueError(f"{instance_type!r} is not an instance type of the form ml.<family>.<size>")
    return match["family"]


def has_local_storage(instance_type: str) -> bool:
    """True where the instance has NVMe instance storage (SageMaker refuses a volume KMS key there)."""
    family = family_of(instance_type)
    if family in LOCAL_STORAGE_FAMILIES:
        return True
    if family in EBS_ONLY_FAMILIES:
        return False
    raise UnknownInstanceStorageError(
        f"{instance_type}: the storage of instance family {family!r} is not classified; add it to "
        "LOCAL_STORAGE_FAMILIES or EBS_ONLY_FAMILIES in config/sagemaker_api.py (EC2 instance store "
        "specifications) before using it"
    )


def volume_kms_key_for(instance_type: str, key: T) -> T | None:
    """``key`` for an instance type with an EBS volume; None (omit the field) for local NVMe storage.

    SageMaker: "You can't request a VolumeKmsKeyId when using an instance type with local storage."
    Local volumes are encrypted by a hardware module on the instance.
    """
    return None if has_local_storage(instance_type) else key


def is_pattern(value: str) -> bool:
    """``ml.m5.xlarge`` or ``ml.m5.*`` (the forms allowed in ``compute.allowed_instance_types``)."""
    return bool(_PATTERN.match(value))


def matches(instance_type: str, patterns: Iterable[str]) -> bool:
    """Whether ``instance_type`` matches one of ``patterns`` the way IAM's StringLike does."""
    return any(fnmatch.fnmatchcase(instance_type, pattern) for pattern in patterns)


def expand(patterns: Iterable[str], kind: JobKind) -> tuple[str, ...]:
    """The instance types of ``kind`` that ``patterns`` allow, sorted."""
    listed = tuple(patterns)
    return tuple(sorted(t for t in instance_types(kind) if matches(t, listed)))


def same_storage(instance_types_: Sequence[str], reference: str) -> tuple[str, ...]:
    """Those of ``instance_types_`` whose storage class (local NVMe or EBS) is the one of ``reference``;
    unclassified families are left out."""
    local = has_local_storage(reference)
    kept = []
    for instance_type in instance_types_:
        try:
            if has_local_storage(instance_type) == local:
                kept.append(instance_type)
        except UnknownInstanceStorageError:
            continue
    return tuple(kept)


def instance_type_choices(default: str, kind: JobKind, allowed: Iterable[str] = ()) -> tuple[str, ...]:
    """The values an instance-type parameter may take: the types of ``kind`` that ``allowed`` permits
    (every type of ``kind`` when empty) with ``default``'s storage, and ``default`` itself."""
    allowed = tuple(allowed)
    candidates = expand(allowed, kind) if allowed else tuple(sorted(instance_types(kind)))
    return tuple(sorted({*same_storage(candidates, default), default}))


# --- names ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NameConstraint:
    """Length limits and pattern of one SageMaker name shape."""

    shape: str
    min_length: int
    max_length: int
    pattern: str

    def problem(self, value: str) -> str | None:
        """Why SageMaker would refuse ``value`` for this shape, or None."""
        if not self.min_length <= len(value) <= self.max_length:
            return f"{len(value)} characters; {self.shape} takes {self.min_length} to {self.max_length}"
        if self.pattern and not re.fullmatch(self.pattern, value):
            return f"does not match {self.shape}'s pattern {self.pattern}"
        return None


@cache
def name_constraint(shape_name: str) -> NameConstraint:
    data = shape(shape_name)
    return NameConstraint(
        shape=shape_name,
        min_length=int(data.get("min", 0)),
        max_length=int(data["max"]),
        pattern=str(data.get("pattern", "")),
    )


def documentation(shape_name: str, member: str | None = None) -> str:
    """The API reference text of a shape (or of one of its members), tags removed, spaces collapsed."""
    data = shape(shape_name)
    text = data["members"][member].get("documentation", "") if member else data.get("documentation", "")
    return " ".join(_TAG.sub("", str(text)).split())


__all__ = [
    "EBS_ONLY_FAMILIES",
    "ENDPOINT_LOCAL_STORAGE_SENTENCE",
    "INSTANCE_TYPE_SHAPES",
    "LOCAL_STORAGE_FAMILIES",
    "LOCAL_STORAGE_PATTERNS",
    "LOCAL_STORAGE_SENTENCE",
    "UNCLASSIFIED_FAMILIES",
    "JobKind",
    "NameConstraint",
    "UnknownInstanceStorageError",
    "documentation",
    "expand",
    "family_of",
    "has_local_storage",
    "instance_type_choices",
    "instance_types",
    "is_pattern",
    "matches",
    "name_constraint",
    "same_storage",
    "service_model",
    "volume_kms_key_for",
]
