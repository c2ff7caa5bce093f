"""Typed, frozen, validated settings for every environment of the platform.

The settings live in ``config/environments.toml``. :func:`load_config` parses that file into the
frozen dataclasses below and validates every field; anything wrong raises :class:`ConfigError`,
whose message names the field, the bad value and what is allowed. Nothing here reads the process
environment or the CDK context: only ``app.py`` does that.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from config import sagemaker_api

DEFAULT_CONFIG_PATH = Path(__file__).with_name("environments.toml")

# Regions where the SageMaker SDK's image registry has both the managed XGBoost image and the Model
# Monitor analyzer (tests/test_images.py checks it). A typo in a region must fail at synth.
KNOWN_REGIONS = (
    "af-south-1",
    "ap-east-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ca-central-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
)

# Instance families the managed XGBoost container runs on (CPU and NVIDIA GPU). Inferentia and
# Trainium families are left out on purpose: XGBoost cannot use them.
CPU_INSTANCE_FAMILIES = (
    "t3",
    "m5",
    "m5d",
    "m6i",
    "m6id",
    "m7i",
    "c5",
    "c5d",
    "c6i",
    "c6id",
    "c7i",
    "r5",
    "r5d",
    "r6i",
    "r7i",
)
GPU_INSTANCE_FAMILIES = ("g4dn", "g5", "g6", "g6e", "p3", "p4d", "p5")
INSTANCE_SIZES = (
    "medium",
    "large",
    "xlarge",
    "2xlarge",
    "4xlarge",
    "8xlarge",
    "9xlarge",
    "12xlarge",
    "16xlarge",
    "18xlarge",
    "24xlarge",
    "32xlarge",
    "48xlarge",
)

# Retention values CloudWatch Logs accepts (PutRetentionPolicy).
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)

# Interface endpoints the isolated subnets can have (service name suffix after com.amazonaws.REGION.).
INTERFACE_ENDPOINT_SERVICES = (
    "sagemaker.api",
    "sagemaker.runtime",
    "sagemaker.featurestore-runtime",
    "sagemaker.metrics",
    "sts",
    "ecr.api",
    "ecr.dkr",
    "logs",
    "monitoring",
    "kms",
    "athena",
    "glue",
    # The platform's functions: the model deployer (SSM, CloudFormation) and the alerts they send (SNS).
    "ssm",
    "cloudformation",
    "sns",
)

# Environments whose data must survive a `cdk destroy`.
PROTECTED_ENVIRONMENTS = ("staging", "prod")

RemovalPolicyName = Literal["retain", "destroy"]

_ACCOUNT_RE = re.compile(r"^\d{12}$")
# Both go into S3 bucket names (<project>-<env>-<purpose>-<account>-<region>, at most 63 characters).
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,9}$")
_PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{1,11}$")
_DATASET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,99}$")
_INSTANCE_RE = re.compile(r"^ml\.(?P<family>[a-z0-9]+)\.(?P<size>[a-z0-9]+)$")
_PRIVATE_NETWORKS = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


def _is_private(network: ipaddress.IPv4Network) -> bool:
    return any(network.subnet_of(private) for private in _PRIVATE_NETWORKS)


class ConfigError(ValueError):
    """A setting is missing or wrong. The message says which, the value, and what is allowed."""

    def __init__(self, field_path: str, value: object, problem: str, source: str = "") -> None:
        self.field_path = field_path
        self.value = value
        self.problem = problem
        prefix = f"{source}: " if source else ""
        super().__init__(f"{prefix}{field_path} = {value!r}: {problem}")


def _choices(values: Sequence[object]) -> str:
    return ", ".join(str(v) for v in values)


def check_instance_type(path: str, value: str) -> str:
    """Validate an ``ml.<family>.<size>`` instance type and return its family."""
    match = _INSTANCE_RE.match(value)
    if not match:
        raise ConfigError(path, value, "must look like ml.<family>.<size>, e.g. ml.m5.xlarge")
    family, size = match["family"], match["size"]
    if family not in CPU_INSTANCE_FAMILIES + GPU_INSTANCE_FAMILIES:
        raise ConfigError(
            path,
            value,
            f"unknown instance family {family!r}; XGBoost runs on "
            f"{_choices(CPU_INSTANCE_FAMILIES + GPU_INSTANCE_FAMILIES)}",
        )
    if size not in INSTANCE_SIZES:
        raise ConfigError(path, value, f"unknown instance size {size!r}; use one of {_choices(INSTANCE_SIZES)}")
    return family


def is_gpu_instance(instance_type: str) -> bool:
    match = _INSTANCE_RE.match(instance_type)
    return match is not None and match["family"] in GPU_INSTANCE_FAMILIES


_KIND_NAMES = {
    "training": "training jobs",
    "processing": "processing jobs",
    "hosting": "endpoints",
    "transform": "batch transform",
}


def check_instance_kind(path: str, value: str, kind: sagemaker_api.JobKind, *, hint: str = "") -> None:
    """Refuse an instance type the SageMaker API does not accept for ``kind`` (botocore's enum of the
    request field), or whose storage (EBS or local NVMe) the project has not classified."""
    accepted = sagemaker_api.instance_types(kind)
    if value not in accepted:
        family = sagemaker_api.family_of(value)
        same_family = sorted(t for t in accepted if sagemaker_api.family_of(t) == family)
        offer = f"{family} sizes it accepts: {_choices(same_family)}" if same_family else f"it has no {family} type"
        raise ConfigError(
            path,
            value,
            f"SageMaker does not accept this instance type for {_KIND_NAMES[kind]} "
            f"({sagemaker_api.INSTANCE_TYPE_SHAPES[kind]}); {offer}{hint}",
        )
    try:
        sagemaker_api.has_local_storage(value)
    except sagemaker_api.UnknownInstanceStorageError as error:
        raise ConfigError(path, value, str(error)) from None


def _check_days(path: str, value: int, *, minimum: int = 1, maximum: int = 3650) -> None:
    if not minimum <= value <= maximum:
        raise ConfigError(path, value, f"must be between {minimum} and {maximum} days")


def _check_log_retention(path: str, value: int) -> None:
    if value not in LOG_RETENTION_DAYS:
        raise ConfigError(path, value, f"CloudWatch Logs accepts only {_choices(LOG_RETENTION_DAYS)}")


@dataclass(frozen=True)
class NetworkSettings:
    """The VPC of one environment: isolated subnets only, reached through VPC endpoints."""

    vpc_cidr: str
    subnet_prefix_length: int = 22
    flow_log_retention_days: int = 365
    interface_endpoints: tuple[str, ...] = INTERFACE_ENDPOINT_SERVICES

    def validate(self, path: str, availability_zones: int) -> None:
        try:
            network = ipaddress.ip_network(self.vpc_cidr, strict=True)
        except ValueError as error:
            raise ConfigError(
                f"{path}.vpc_cidr", self.vpc_cidr, f"not a valid IPv4 network ({error}); e.g. 10.20.0.0/16"
            ) from None
        if not (isinstance(network, ipaddress.IPv4Network) and _is_private(network)):
            raise ConfigError(
                f"{path}.vpc_cidr",
                self.vpc_cidr,
                "must be inside a private range: 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16",
            )
        if not 16 <= network.prefixlen <= 24:
            raise ConfigError(f"{path}.vpc_cidr", self.vpc_cidr, "prefix length must be between /16 and /24")
        if not network.prefixlen < self.subnet_prefix_length <= 27:
            raise ConfigError(
                f"{path}.subnet_prefix_length",
                self.subnet_prefix_length,
                f"must be longer than the VPC prefix /{network.prefixlen} and at most /27",
            )
        capacity = 2 ** (self.subnet_prefix_length - network.prefixlen)
        if capacity < availability_zones:
            raise ConfigError(
                f"{path}.subnet_prefix_length",
                self.subnet_prefix_length,
                f"{self.vpc_cidr} holds only {capacity} subnets of /{self.subnet_prefix_length}, "
                f"one per availability zone needs {availability_zones}; use a longer prefix",
            )
        _check_log_retention(f"{path}.flow_log_retention_days", self.flow_log_retention_days)
        for index, service in enumerate(self.interface_endpoints):
            if service not in INTERFACE_ENDPOINT_SERVICES:
                raise ConfigError(
                    f"{path}.interface_endpoints[{index}]",
                    service,
                    f"unknown endpoint service; known: {_choices(INTERFACE_ENDPOINT_SERVICES)}",
                )
        if len(set(self.interface_endpoints)) != len(self.interface_endpoints):
            raise ConfigError(f"{path}.interface_endpoints", list(self.interface_endpoints), "lists a service twice")

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.vpc_cidr)


@dataclass(frozen=True)
class DataSettings:
    """Lifecycle of the data buckets (days)."""

    noncurrent_version_expiry_days: int = 90
    incomplete_upload_expiry_days: int = 7
    capture_expiry_days: int = 90
    monitoring_report_expiry_days: int = 365
    access_log_expiry_days: int = 365
    # Spot checkpoints (models bucket, checkpoints/): only a running or resuming job reads them.
    checkpoint_expiry_days: int = 14
    # The pipelines' working data (processed bucket, pipelines/: splits, evaluation reports, ingestion
    # reports). 0 keeps it: a registered model version links to its evaluation report there.
    pipeline_working_expiry_days: int = 0
    # Athena results of training-set queries (processed bucket, athena-results/).
    query_result_expiry_days: int = 30

    def validate(self, path: str) -> None:
        for item in dataclasses.fields(self):
            if item.name == "pipeline_working_expiry_days" and self.pipeline_working_expiry_days == 0:
                continue
            _check_days(f"{path}.{item.name}", getattr(self, item.name))


@dataclass(frozen=True)
class TuningSettings:
    """Bayesian hyperparameter tuning instead of a single training job."""

    enabled: bool = False
    max_jobs: int = 20
    max_parallel_jobs: int = 2

    def validate(self, path: str) -> None:
        if not 1 <= self.max_jobs <= 500:
            raise ConfigError(f"{path}.max_jobs", self.max_jobs, "must be between 1 and 500")
        if not 1 <= self.max_parallel_jobs <= min(self.max_jobs, 100):
            raise ConfigError(
                f"{path}.max_parallel_jobs",
                self.max_parallel_jobs,
                f"must be between 1 and max_jobs ({self.max_jobs}), at most 100",
            )


@dataclass(frozen=True)
class TrainingSettings:
    """The training pipeline: compute, spot, limits, quality gate and retraining schedule."""

    # False: the environment trains no models of its own (no training pipeline, no retraining
    # triggers); it serves the models another environment promotes to it ([promotion]).
    enabled: bool = True
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    processing_instance_type: str = "ml.m5.xlarge"
    volume_size_gb: int = 30
    use_spot: bool = True
    max_runtime_seconds: int = 3600
    max_wait_seconds: int = 7200
    auc_threshold: float = 0.75
    schedule: str = "cron(0 3 ? * MON *)"
    schedule_timezone: str = "UTC"
    tuning: TuningSettings = field(default_factory=TuningSettings)
    # Where the training data comes from: "feature_store" builds a point-in-time training set from the
    # offline store and a labels dataset (s3://<raw bucket>/labels/<labels_dataset>/); "raw" trains on
    # the raw files as they land, for a new environment whose feature store and labels are still empty.
    source: Literal["feature_store", "raw"] = "raw"
    labels_dataset: str = "current"

    def validate(self, path: str) -> None:
        family = check_instance_type(f"{path}.instance_type", self.instance_type)
        check_instance_type(f"{path}.processing_instance_type", self.processing_instance_type)
        check_instance_kind(f"{path}.instance_type", self.instance_type, "training")
        check_instance_kind(f"{path}.processing_instance_type", self.processing_instance_type, "processing")
        if not 1 <= self.instance_count <= 20:
            raise ConfigError(f"{path}.instance_count", self.instance_count, "must be between 1 and 20")
        gpu = family in GPU_INSTANCE_FAMILIES
        if self.device == "cuda" and not gpu:
            raise ConfigError(
                f"{path}.device",
                self.device,
                f"{self.instance_type} has no GPU; use a GPU instance type or device 'auto'",
            )
        if self.device == "cpu" and gpu:
            raise ConfigError(
                f"{path}.device", self.device, f"{self.instance_type} is a GPU instance: pay for it and use it ('auto')"
            )
        if not 1 <= self.volume_size_gb <= 16384:
            raise ConfigError(f"{path}.volume_size_gb", self.volume_size_gb, "must be between 1 and 16384")
        if not 60 <= self.max_runtime_seconds <= 28 * 86400:
            raise ConfigError(f"{path}.max_runtime_seconds", self.max_runtime_seconds, "must be between 60 and 2419200")
        if self.use_spot and not self.max_runtime_seconds <= self.max_wait_seconds <= 28 * 86400:
            raise ConfigError(
                f"{path}.max_wait_seconds",
                self.max_wait_seconds,
                f"must be at least max_runtime_seconds ({self.max_runtime_seconds}) and at most 2419200: "
                "it bounds waiting for spot capacity plus training",
            )
        if not 0.5 <= self.auc_threshold < 1:
            raise ConfigError(f"{path}.auc_threshold", self.auc_threshold, "must be at least 0.5 (random) and below 1")
        if not re.fullmatch(r"(cron|rate)\(.+\)", self.schedule):
            raise ConfigError(
                f"{path}.schedule", self.schedule, "must be an EventBridge Scheduler expression: cron(...) or rate(...)"
            )
        self.tuning.validate(f"{path}.tuning")
        if not _DATASET_RE.match(self.labels_dataset):
            raise ConfigError(
                f"{path}.labels_dataset",
                self.labels_dataset,
                "must be 1-100 letters, digits, '.', '_', '=' or '-', starting with a letter or digit: it is the "
                "folder s3://<raw bucket>/labels/<labels_dataset>/ and a partition value in the labels table",
            )


_VARIANT_RE = re.compile(r"^[A-Z][A-Za-z0-9]{0,30}$")


@dataclass(frozen=True)
class VariantSettings:
    """One production variant: a stable name (autoscaling and updates key on it) and its traffic weight."""

    name: str
    weight: float = 1.0

    def validate(self, path: str) -> None:
        if not _VARIANT_RE.match(self.name):
            raise ConfigError(
                f"{path}.name", self.name, "must be 1-31 letters or digits, starting with a capital letter"
            )
        if not 0 < self.weight <= 1000:
            raise ConfigError(f"{path}.weight", self.weight, "must be above 0 (a variant without traffic is a shadow)")


DEFAULT_VARIANTS = (VariantSettings("Champion", 0.9), VariantSettings("Challenger", 0.1))
INFERENCE_TYPES = ("realtime", "serverless", "async")
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)


@dataclass(frozen=True)
class ServingSettings:
    """How the environment serves the model: one switch for the inference type, then its sizes."""

    inference_type: Literal["realtime", "serverless", "async"] = "realtime"
    instance_type: str = "ml.m5.large"
    initial_instance_count: int = 2
    min_capacity: int = 2
    max_capacity: int = 4
    # Requests per second one instance serves at the latency target (benchmarks/serving_benchmark.py);
    # autoscaling targets max_rps_per_instance * scaling_safety_factor * 60 invocations per minute.
    max_rps_per_instance: float = 400.0
    scaling_safety_factor: float = 0.5
    scale_in_cooldown_seconds: int = 300
    scale_out_cooldown_seconds: int = 60
    variants: tuple[VariantSettings, ...] = DEFAULT_VARIANTS
    shadow_variant: bool = False
    capture_sampling_percentage: int = 20
    serverless_memory_mb: int = 2048
    serverless_max_concurrency: int = 10
    async_max_concurrent_invocations: int = 4
    deployment: Literal["canary", "linear", "all_at_once"] = "canary"
    canary_percent: int = 10
    linear_step_percent: int = 25
    baking_seconds: int = 600
    rollback_5xx_per_minute: int = 5
    latency_p99_ms: int = 100
    model_download_timeout_seconds: int = 600
    container_startup_timeout_seconds: int = 600
    # Off for one deploy to change the instance type of, or remove, an autoscaled variant (SageMaker
    # refuses both while the variant is registered with Application Auto Scaling; README, "Serving").
    autoscaling: bool = True
    # Batch transform (the batch scoring pipeline); empty: the endpoint's instance type.
    batch_instance_type: str = ""

    @property
    def transform_instance_type(self) -> str:
        return self.batch_instance_type or self.instance_type

    @property
    def invocations_per_instance_target(self) -> float:
        return round(self.max_rps_per_instance * self.scaling_safety_factor * 60, 1)

    def _check_realtime_shape(self, path: str, names: list[str]) -> None:
        """Either two or more weighted variants (A/B), or one variant plus a shadow. CreateEndpointConfig,
        ShadowProductionVariants: "If you use this field, you can only specify one variant for
        ProductionVariants and one variant for ShadowProductionVariants." """
        if self.shadow_variant and len(self.variants) != 1:
            raise ConfigError(
                f"{path}.variants",
                names,
                "with shadow_variant = true a real-time endpoint takes exactly one production variant (SageMaker "
                "CreateEndpointConfig: with ShadowProductionVariants you can only specify one variant for "
                "ProductionVariants); keep one variant, or set shadow_variant = false for an A/B test",
            )
        if not self.shadow_variant and len(self.variants) < 2:
            raise ConfigError(
                f"{path}.variants",
                names,
                "a real-time endpoint takes either two or more weighted variants (champion, challenger) or one "
                "variant plus a shadow (shadow_variant = true)",
            )

    def validate(self, path: str, *, protected: bool) -> None:
        check_instance_type(f"{path}.instance_type", self.instance_type)
        if self.inference_type != "serverless":
            check_instance_kind(f"{path}.instance_type", self.instance_type, "hosting")
        if self.batch_instance_type:
            check_instance_type(f"{path}.batch_instance_type", self.batch_instance_type)
        check_instance_kind(
            f"{path}.batch_instance_type" if self.batch_instance_type else f"{path}.instance_type",
            self.transform_instance_type,
            "transform",
            hint="; set serving.batch_instance_type to one batch transform accepts",
        )
        names = [v.name for v in self.variants]
        for index, variant in enumerate(self.variants):
            variant.validate(f"{path}.variants[{index}]")
        if len(set(names)) != len(names):
            raise ConfigError(f"{path}.variants", names, "lists a variant name twice")
        if self.inference_type == "serverless":
            if len(self.variants) != 1 or self.shadow_variant:
                raise ConfigError(
                    f"{path}.variants", names, "a serverless endpoint has exactly one variant and no shadow (AWS limit)"
                )
            if self.serverless_memory_mb not in SERVERLESS_MEMORY_MB:
                raise ConfigError(
                    f"{path}.serverless_memory_mb",
                    self.serverless_memory_mb,
                    f"use one of {_choices(SERVERLESS_MEMORY_MB)}",
                )
            if not 1 <= self.serverless_max_concurrency <= 200:
                raise ConfigError(
                    f"{path}.serverless_max_concurrency", self.serverless_max_concurrency, "must be 1-200"
                )
            if protected:
                raise ConfigError(
                    f"{path}.inference_type",
                    self.inference_type,
                    "serverless endpoints cannot run in the VPC, network-isolated or with data capture; "
                    "use 'realtime' or 'async' outside dev",
                )
            return
        if self.inference_type == "realtime":
            self._check_realtime_shape(path, names)
        elif self.shadow_variant:
            raise ConfigError(
                f"{path}.shadow_variant",
                self.shadow_variant,
                f"shadow variants serve real-time endpoints only; set it false for inference_type {self.inference_type!r}",
            )
        floor = 2 if protected else 1
        if not floor <= self.initial_instance_count <= 100:
            raise ConfigError(
                f"{path}.initial_instance_count",
                self.initial_instance_count,
                f"must be at least {floor}: one instance is one availability zone and no capacity during updates",
            )
        minimum = 0 if self.inference_type == "async" and not protected else floor
        if not minimum <= self.min_capacity <= self.max_capacity <= 100:
            raise ConfigError(
                f"{path}.min_capacity",
                self.min_capacity,
                f"must be at least {minimum} and at most max_capacity ({self.max_capacity})",
            )
        if not 0 < self.scaling_safety_factor <= 1:
            raise ConfigError(
                f"{path}.scaling_safety_factor", self.scaling_safety_factor, "must be above 0 and at most 1"
            )
        if not 1 <= self.max_rps_per_instance <= 1_000_000:
            raise ConfigError(
                f"{path}.max_rps_per_instance", self.max_rps_per_instance, "must be between 1 and 1000000"
            )
        if not 0 <= self.capture_sampling_percentage <= 100:
            raise ConfigError(f"{path}.capture_sampling_percentage", self.capture_sampling_percentage, "must be 0-100")
        if not 1 <= self.canary_percent <= 50:
            raise ConfigError(f"{path}.canary_percent", self.canary_percent, "SageMaker allows 1-50 (% of capacity)")
        if not 10 <= self.linear_step_percent <= 50:
            raise ConfigError(
                f"{path}.linear_step_percent", self.linear_step_percent, "SageMaker allows 10-50 (% of capacity)"
            )
        if not 0 <= self.baking_seconds <= 3600:
            raise ConfigError(f"{path}.baking_seconds", self.baking_seconds, "SageMaker allows 0-3600")
        for name in ("model_download_timeout_seconds", "container_startup_timeout_seconds"):
            if not 60 <= getattr(self, name) <= 3600:
                raise ConfigError(f"{path}.{name}", getattr(self, name), "SageMaker allows 60-3600")


@dataclass(frozen=True)
class FeatureStoreSettings:
    """The customer feature group: an online store for low-latency reads, an offline store (Iceberg
    tables in the features bucket, registered in the Glue Data Catalog) for training sets."""

    online_store: bool = True
    storage_type: Literal["Standard", "InMemory"] = "Standard"
    ttl_days: int = 365  # online records expire this long after their event time; 0 keeps them
    throughput_mode: Literal["OnDemand", "Provisioned"] = "OnDemand"
    read_capacity_units: int = 0  # Provisioned only
    write_capacity_units: int = 0  # Provisioned only
    # Part of the feature group's name. Bumping it creates a new feature group (CloudFormation
    # replaces the old one): the only way to remove or retype a feature, or to change a property
    # that cannot be updated in place. It needs allow_replacement = true.
    group_version: int = 1
    allow_replacement: bool = False
    ingest_max_reject_fraction: float = 0.0  # ingestion fails above this share of rejected records

    def validate(self, path: str) -> None:
        if self.storage_type == "InMemory":
            raise ConfigError(
                f"{path}.storage_type",
                self.storage_type,
                "an InMemory online store does not replicate to the offline store that training sets are "
                "read from; use 'Standard'",
            )
        if not 0 <= self.ttl_days <= 3650:
            raise ConfigError(f"{path}.ttl_days", self.ttl_days, "must be 0 (no expiry) to 3650 days")
        if self.ttl_days and not self.online_store:
            raise ConfigError(f"{path}.ttl_days", self.ttl_days, "applies to the online store; set 0 or enable it")
        provisioned = self.throughput_mode == "Provisioned"
        for name in ("read_capacity_units", "write_capacity_units"):
            units = getattr(self, name)
            if provisioned and not 1 <= units <= 10_000_000:
                raise ConfigError(f"{path}.{name}", units, "Provisioned throughput needs 1 to 10,000,000 units")
            if not provisioned and units:
                raise ConfigError(
                    f"{path}.{name}", units, "only applies when throughput_mode = 'Provisioned'; remove it"
                )
        if provisioned and not self.online_store and self.read_capacity_units:
            raise ConfigError(
                f"{path}.read_capacity_units", self.read_capacity_units, "reads are billed on the online store only"
            )
        if not 1 <= self.group_version <= 999:
            raise ConfigError(f"{path}.group_version", self.group_version, "must be 1 to 999")
        if not 0.0 <= self.ingest_max_reject_fraction <= 1.0:
            raise ConfigError(
                f"{path}.ingest_max_reject_fraction", self.ingest_max_reject_fraction, "must be between 0 and 1"
            )


_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class OperationsSettings:
    """Who is told when something needs a person, and how long the platform's own logs are kept."""

    # The alarm topic's subscribers from the first deploy: e-mail addresses (each confirms once, from
    # the message SNS sends) and HTTPS endpoints (a chat webhook, an incident tool).
    alert_emails: tuple[str, ...] = ()
    alert_https_endpoints: tuple[str, ...] = ()
    # Log groups of the platform's functions and of SageMaker's jobs and endpoints (values CloudWatch
    # Logs accepts).
    log_retention_days: int = 365
    # AWS Budgets: the environment's monthly cost limit; actual and forecast spend at 80 % and 100 %
    # of it notify the alarm topic.
    monthly_budget_usd: float = 1000.0
    # Create SageMaker's account-wide job log groups (/aws/sagemaker/TrainingJobs, ProcessingJobs,
    # TransformJobs) with the logs key and retention. One environment per account and region may own
    # them; set false for the others, or where the groups exist already (README, "Logs").
    sagemaker_job_log_groups: bool = True

    def validate(self, path: str) -> None:
        for index, address in enumerate(self.alert_emails):
            if not _EMAIL_RE.match(address):
                raise ConfigError(
                    f"{path}.alert_emails[{index}]", address, "not an e-mail address, e.g. ops@example.com"
                )
        for index, url in enumerate(self.alert_https_endpoints):
            if not re.fullmatch(r"https://[^\s/]+(/\S*)?", url):
                raise ConfigError(
                    f"{path}.alert_https_endpoints[{index}]",
                    url,
                    "must be an https:// URL (SNS delivers to HTTPS endpoints only; plain HTTP is refused)",
                )
        if not self.alert_emails and not self.alert_https_endpoints:
            raise ConfigError(
                f"{path}.alert_emails",
                [],
                "name at least one subscriber (alert_emails or alert_https_endpoints): alarms that reach nobody "
                "protect nothing",
            )
        for name in ("alert_emails", "alert_https_endpoints"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ConfigError(f"{path}.{name}", list(values), "lists a subscriber twice")
        _check_log_retention(f"{path}.log_retention_days", self.log_retention_days)
        if not 1 <= self.monthly_budget_usd <= 1_000_000_000:
            raise ConfigError(
                f"{path}.monthly_budget_usd",
                self.monthly_budget_usd,
                "must be between 1 and 1000000000 (USD a month; AWS Budgets' limit)",
            )


@dataclass(frozen=True)
class ComputeSettings:
    """The SageMaker instance types the environment may launch. The roles' deny guardrails refuse
    training, processing, tuning and transform jobs and endpoint configs with any other type, and the
    pipelines' instance-type parameters accept only these."""

    # Exact types (ml.m5.xlarge) or families (ml.m5.*); empty: exactly the types this config uses.
    allowed_instance_types: tuple[str, ...] = ()

    def validate(self, path: str) -> None:
        for index, value in enumerate(self.allowed_instance_types):
            if not sagemaker_api.is_pattern(value):
                raise ConfigError(
                    f"{path}.allowed_instance_types[{index}]",
                    value,
                    "must be an instance type (ml.m5.xlarge) or a family (ml.m5.*)",
                )
            if not any(
                sagemaker_api.matches(t, [value]) for kind in _KIND_NAMES for t in sagemaker_api.instance_types(kind)
            ):
                raise ConfigError(
                    f"{path}.allowed_instance_types[{index}]",
                    value,
                    "matches no instance type SageMaker accepts for jobs, endpoints or batch transform",
                )
        if len(set(self.allowed_instance_types)) != len(self.allowed_instance_types):
            raise ConfigError(f"{path}.allowed_instance_types", list(self.allowed_instance_types), "lists a type twice")


# --- model monitoring (issue 8; docs/decisions/0016-model-monitoring-infrastructure.md) -------------

MONITORING_BACKENDS = ("platform", "model_monitor")
RETRAIN_CATEGORIES = ("data_drift", "model_quality", "bias_drift", "attribution_drift")
# Divisors of 24: every run's window starts on the same hours each day.
MONITORING_SCHEDULE_HOURS = (1, 2, 3, 4, 6, 8, 12, 24)
# Inputs of the platform monitoring job besides the per-variant models: code, config, capture, labelled
# data, baselines (CreateProcessingJob allows 10 ProcessingInputs).
MAX_MONITORED_VARIANTS = 10 - 5
_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9._/#:-]{1,255}$")


def _check_fraction(path: str, value: float, *, open_low: bool = True) -> None:
    low_ok = value > 0 if open_low else value >= 0
    if not (low_ok and value <= 1):
        raise ConfigError(path, value, "must be above 0 and at most 1" if open_low else "must be between 0 and 1")


def _check_alpha(path: str, value: float) -> None:
    if not 0 < value <= 0.5:
        raise ConfigError(path, value, "is a significance level: use a value above 0 and at most 0.5, e.g. 0.01")


@dataclass(frozen=True)
class MonitoringThresholds:
    """The monitoring job's thresholds: the keys of ``monitoring_code/monitor_config.py`` that an
    environment tunes, with the same defaults (CONTRACT.md explains each; a test keeps them equal).
    :meth:`job_config` writes them as monitor.py's ``--config`` JSON; keys not listed keep the
    runtime's defaults.

    TOML key -> monitor.py key: ``min_labelled`` -> ``model_quality.min_labelled``, ``max_auc_drop`` ->
    ``model_quality.max_drop.auc``, ``bias_max_dppl_change`` -> ``bias.max_dppl_change``,
    ``bias_max_di_ratio`` -> ``bias.max_di_ratio``, ``min_ndcg`` -> ``attribution.min_ndcg``,
    ``challenger_alpha`` / ``challenger_min_labelled`` -> ``challenger.alpha`` / ``.min_labelled``,
    ``min_auc`` -> ``model_quality.minimum.auc`` (0: no absolute floor, the runtime's null); the others
    keep their names.
    """

    min_records: int = 500  # rows per variant and window before drift is judged
    drift_threshold: float = 0.1  # KS distance (Model Monitor's default comparison_threshold)
    categorical_drift_threshold: float = 0.1  # L-infinity distance of category shares
    drift_alpha: float = 0.01  # the distance must also be significant at this level
    max_missing_fraction: float = 0.01
    max_type_error_fraction: float = 0.001
    max_out_of_range_fraction: float = 0.001
    max_malformed_fraction: float = 0.001
    prediction_threshold: float = 0.5  # score at or above which a prediction is "churns"
    # Violation categories that start the training pipeline; data integrity can never be one.
    retrain_on: tuple[str, ...] = ("data_drift", "model_quality", "attribution_drift")
    min_labelled: int = 1000  # labelled rows before model quality is judged
    max_auc_drop: float = 0.05  # below the served version's registered test AUC
    # An absolute AUC floor on top (0: none). Not the training gate by default: a version that passed
    # the gate just above it would fall below it on sampling noise alone (AUC's standard error is about
    # 0.015 on 1,000 labels), while the drop is measured against the version's own evaluation.
    min_auc: float = 0.0
    bias_max_dppl_change: float = 0.1
    bias_max_di_ratio: float = 1.25
    min_ndcg: float = 0.9  # attribution ranking agreement (Clarify's default)
    challenger_alpha: float = 0.05
    challenger_min_labelled: int = 200

    def validate(self, path: str) -> None:
        if not 10 <= self.min_records <= 10_000_000:
            raise ConfigError(f"{path}.min_records", self.min_records, "must be between 10 and 10000000")
        for name in ("drift_threshold", "categorical_drift_threshold", "bias_max_dppl_change", "min_ndcg"):
            _check_fraction(f"{path}.{name}", getattr(self, name))
        for name in (
            "max_missing_fraction",
            "max_type_error_fraction",
            "max_out_of_range_fraction",
            "max_malformed_fraction",
            "max_auc_drop",
            "min_auc",
        ):
            _check_fraction(f"{path}.{name}", getattr(self, name), open_low=False)
        for name in ("drift_alpha", "challenger_alpha"):
            _check_alpha(f"{path}.{name}", getattr(self, name))
        if not 0 < self.prediction_threshold < 1:
            raise ConfigError(
                f"{path}.prediction_threshold", self.prediction_threshold, "is a score: use a value between 0 and 1"
            )
        if "data_integrity" in self.retrain_on:
            raise ConfigError(
                f"{path}.retrain_on",
                list(self.retrain_on),
                "cannot hold data_integrity: broken input data is fixed upstream, never retrained on",
            )
        for index, category in enumerate(self.retrain_on):
            if category not in RETRAIN_CATEGORIES:
                raise ConfigError(
                    f"{path}.retrain_on[{index}]", category, f"unknown category; use {_choices(RETRAIN_CATEGORIES)}"
                )
        if len(set(self.retrain_on)) != len(self.retrain_on):
            raise ConfigError(f"{path}.retrain_on", list(self.retrain_on), "lists a category twice")
        if not 10 <= self.min_labelled <= 10_000_000:
            raise ConfigError(f"{path}.min_labelled", self.min_labelled, "must be between 10 and 10000000")
        if not 20 <= self.challenger_min_labelled <= 10_000_000:
            raise ConfigError(
                f"{path}.challenger_min_labelled", self.challenger_min_labelled, "must be between 20 and 10000000"
            )
        if not self.bias_max_di_ratio > 1:
            raise ConfigError(
                f"{path}.bias_max_di_ratio",
                self.bias_max_di_ratio,
                "must be above 1 (e.g. 1.25: disparate impact may change by a factor of 1.25)",
            )

    def job_config(self) -> dict[str, Any]:
        """monitor.py's ``--config`` document (also baseline.py's, which writes constraints.json from it)."""
        return {
            "min_records": self.min_records,
            "drift_threshold": self.drift_threshold,
            "categorical_drift_threshold": self.categorical_drift_threshold,
            "drift_alpha": self.drift_alpha,
            "max_missing_fraction": self.max_missing_fraction,
            "max_type_error_fraction": self.max_type_error_fraction,
            "max_out_of_range_fraction": self.max_out_of_range_fraction,
            "max_malformed_fraction": self.max_malformed_fraction,
            "prediction_threshold": self.prediction_threshold,
            "retrain_on": list(self.retrain_on),
            "model_quality": {
                "min_labelled": self.min_labelled,
                "max_drop": {"auc": self.max_auc_drop},
                "minimum": {"auc": self.min_auc or None},
            },
            "bias": {"max_dppl_change": self.bias_max_dppl_change, "max_di_ratio": self.bias_max_di_ratio},
            "attribution": {"min_ndcg": self.min_ndcg},
            "challenger": {"alpha": self.challenger_alpha, "min_labelled": self.challenger_min_labelled},
        }


@dataclass(frozen=True)
class MonitoringSettings:
    """Model monitoring of the environment's endpoint: which backend, how often, over which window,
    how long labels take, and what the job runs on. The defaults and why: README "Monitoring in AWS"
    and docs/decisions/0016."""

    # False only where the endpoint captures nothing to monitor (a serverless endpoint has no capture).
    enabled: bool = True
    # "platform": the platform's own monitoring pipeline (this repository's code); "model_monitor": the
    # native SageMaker Model Monitor schedules, for accounts that still have Model Monitor (closed to
    # new customers since 2026-07-30). Both publish the same metrics; alarms and actions do not change.
    backend: Literal["platform", "model_monitor"] = "platform"
    schedule_hours: int = 1  # a run every N hours (a divisor of 24)
    start_minute: int = 15  # platform: minutes past the hour a run starts, so late capture files have landed
    window_hours: int = 1  # platform: hours of capture a run reads (at least schedule_hours)
    label_delay_hours: int = 24  # how long after a prediction its ground-truth label has arrived
    retrain_cooldown_hours: int = 24  # at most one retraining started by monitoring per this many hours
    alarm_after_runs: int = 1  # consecutive runs with violations before an alarm fires
    instance_type: str = "ml.m5.xlarge"
    volume_size_gb: int = 30
    max_runtime_seconds: int = 1800
    metric_namespace: str = "MLPlatform/ModelMonitoring"
    thresholds: MonitoringThresholds = field(default_factory=MonitoringThresholds)

    @property
    def schedule_seconds(self) -> int:
        return self.schedule_hours * 3600

    def validate(self, path: str, *, serving: ServingSettings) -> None:
        captures = serving.inference_type != "serverless"
        if self.enabled and not captures:
            raise ConfigError(
                f"{path}.enabled",
                self.enabled,
                "a serverless endpoint captures no requests, so there is nothing to monitor; set "
                "monitoring.enabled = false (README: dev is not monitored) or serve 'realtime' or 'async'",
            )
        if not self.enabled and captures:
            raise ConfigError(
                f"{path}.enabled",
                self.enabled,
                f"the {serving.inference_type} endpoint captures requests, and every endpoint with data capture "
                "is monitored (policy rule MlPlatform-EndpointMonitored); set monitoring.enabled = true",
            )
        variants = len(serving.variants) + int(serving.shadow_variant)
        if self.enabled and self.backend == "platform" and variants > MAX_MONITORED_VARIANTS:
            raise ConfigError(
                f"{path}.backend",
                self.backend,
                f"the platform's monitoring job reads each variant's model through its own input and SageMaker "
                f"allows 10 inputs per job: at most {MAX_MONITORED_VARIANTS} variants (shadow included), the endpoint "
                f"has {variants}",
            )
        if self.schedule_hours not in MONITORING_SCHEDULE_HOURS:
            raise ConfigError(
                f"{path}.schedule_hours",
                self.schedule_hours,
                f"use a divisor of 24 so windows start on the same hours every day: {_choices(MONITORING_SCHEDULE_HOURS)}",
            )
        if not 0 <= self.start_minute <= 59:
            raise ConfigError(f"{path}.start_minute", self.start_minute, "must be a minute of the hour, 0-59")
        if not self.schedule_hours <= self.window_hours <= 168:
            raise ConfigError(
                f"{path}.window_hours",
                self.window_hours,
                f"must be at least schedule_hours ({self.schedule_hours}), so no captured hour goes unread, "
                "and at most 168",
            )
        if self.backend == "model_monitor" and self.window_hours != self.schedule_hours:
            raise ConfigError(
                f"{path}.window_hours",
                self.window_hours,
                f"Model Monitor reads the capture since its previous run: with backend 'model_monitor' the window "
                f"is schedule_hours ({self.schedule_hours}); remove window_hours or set it equal",
            )
        if not 0 <= self.label_delay_hours <= 336:
            raise ConfigError(
                f"{path}.label_delay_hours", self.label_delay_hours, "must be between 0 and 336 (14 days)"
            )
        if not 1 <= self.retrain_cooldown_hours <= 2160:
            raise ConfigError(
                f"{path}.retrain_cooldown_hours", self.retrain_cooldown_hours, "must be between 1 and 2160 (90 days)"
            )
        # PutMetricAlarm: Period x EvaluationPeriods may not exceed 604,800 seconds (7 days).
        if self.alarm_after_runs < 1 or self.alarm_after_runs * self.schedule_seconds > 604_800:
            raise ConfigError(
                f"{path}.alarm_after_runs",
                self.alarm_after_runs,
                f"must be at least 1, and alarm_after_runs x schedule_hours ({self.schedule_hours}) at most 168 "
                "hours (CloudWatch evaluates an alarm over at most 7 days)",
            )
        family = check_instance_type(f"{path}.instance_type", self.instance_type)
        if family in GPU_INSTANCE_FAMILIES or sagemaker_api.has_local_storage(self.instance_type):
            raise ConfigError(
                f"{path}.instance_type",
                self.instance_type,
                "the monitoring job is CPU code with a KMS-encrypted volume: use a CPU family without local NVMe "
                "storage (SageMaker refuses a volume KMS key on those), e.g. ml.m5.xlarge",
            )
        if not 1 <= self.volume_size_gb <= 16384:
            raise ConfigError(f"{path}.volume_size_gb", self.volume_size_gb, "must be between 1 and 16384")
        if not 60 <= self.max_runtime_seconds <= self.schedule_seconds:
            raise ConfigError(
                f"{path}.max_runtime_seconds",
                self.max_runtime_seconds,
                f"must be between 60 and the schedule interval ({self.schedule_seconds} s): a run ends before "
                "the next one starts",
            )
        if not _NAMESPACE_RE.match(self.metric_namespace) or self.metric_namespace.startswith("AWS/"):
            raise ConfigError(
                f"{path}.metric_namespace",
                self.metric_namespace,
                "must be 1-255 letters, digits or . _ / # : - and not start with 'AWS/' (reserved by AWS)",
            )
        self.thresholds.validate(f"{path}.thresholds")


@dataclass(frozen=True)
class EnvironmentConfig:
    """Everything that differs between dev, staging and prod."""

    name: str
    account: str
    region: str
    availability_zones: tuple[str, ...]
    removal_policy: RemovalPolicyName
    network: NetworkSettings
    data: DataSettings = field(default_factory=DataSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    serving: ServingSettings = field(default_factory=ServingSettings)
    feature_store: FeatureStoreSettings = field(default_factory=FeatureStoreSettings)
    operations: OperationsSettings = field(default_factory=OperationsSettings)
    compute: ComputeSettings = field(default_factory=ComputeSettings)
    monitoring: MonitoringSettings = field(default_factory=MonitoringSettings)

    @property
    def retain_data(self) -> bool:
        return self.removal_policy == "retain"

    def used_instance_types(self) -> dict[str, str]:
        """The instance types this environment's config launches, by the setting that names them."""
        used = {
            "training.instance_type": self.training.instance_type,
            "training.processing_instance_type": self.training.processing_instance_type,
            "serving.batch_instance_type" if self.serving.batch_instance_type else "serving.instance_type": (
                self.serving.transform_instance_type
            ),
        }
        if self.serving.inference_type != "serverless":
            used["serving.instance_type"] = self.serving.instance_type
        if self.monitoring.enabled:
            used["monitoring.instance_type"] = self.monitoring.instance_type
        return used

    @property
    def allowed_instance_types(self) -> tuple[str, ...]:
        """``compute.allowed_instance_types``, or the types the config uses when that list is empty."""
        return self.compute.allowed_instance_types or tuple(sorted(set(self.used_instance_types().values())))

    def _check_allowed_instance_types(self, path: str) -> None:
        allowed = self.compute.allowed_instance_types
        if not allowed:
            return
        for setting, instance_type in self.used_instance_types().items():
            if not sagemaker_api.matches(instance_type, allowed):
                raise ConfigError(
                    f"{path}.compute.allowed_instance_types",
                    list(allowed),
                    f"does not allow {instance_type}, which {setting} uses; add it (or ml.<family>.*) or "
                    "choose an allowed type",
                )

    def validate(self, path: str) -> None:
        if not _NAME_RE.match(self.name):
            raise ConfigError(
                f"{path}.name",
                self.name,
                "must be 2-10 lowercase letters, digits or '-', starting with a letter (it is part of bucket names)",
            )
        _check_account(f"{path}.account", self.account)
        _check_region(f"{path}.region", self.region)
        if len(self.availability_zones) < 2:
            raise ConfigError(
                f"{path}.availability_zones",
                list(self.availability_zones),
                "list at least 2 availability zones: SageMaker spreads endpoint instances and the VPC "
                "endpoints across them",
            )
        for index, zone in enumerate(self.availability_zones):
            if not re.fullmatch(re.escape(self.region) + r"[a-z]", zone):
                raise ConfigError(
                    f"{path}.availability_zones[{index}]",
                    zone,
                    f"not an availability zone of region {self.region!r}; expected {self.region}a, {self.region}b, ...",
                )
        if len(set(self.availability_zones)) != len(self.availability_zones):
            raise ConfigError(f"{path}.availability_zones", list(self.availability_zones), "lists a zone twice")
        if self.removal_policy == "destroy" and self.name in PROTECTED_ENVIRONMENTS:
            raise ConfigError(
                f"{path}.removal_policy",
                self.removal_policy,
                f"{self.name!r} holds data that must survive a stack deletion; use 'retain' "
                f"('destroy' is refused for {_choices(PROTECTED_ENVIRONMENTS)})",
            )
        self.network.validate(f"{path}.network", len(self.availability_zones))
        self.data.validate(f"{path}.data")
        self.training.validate(f"{path}.training")
        self.serving.validate(f"{path}.serving", protected=self.name in PROTECTED_ENVIRONMENTS)
        self.feature_store.validate(f"{path}.feature_store")
        self.operations.validate(f"{path}.operations")
        self.monitoring.validate(f"{path}.monitoring", serving=self.serving)
        self.compute.validate(f"{path}.compute")
        self._check_allowed_instance_types(path)
        self._check_endpoints_for_training_data(path)

    def _check_endpoints_for_training_data(self, path: str) -> None:
        """What the batch starter and the training-set step call from the isolated subnets needs an endpoint."""
        needed = {"sagemaker.api": "the batch starter starts the ingestion and training pipelines"}
        if self.training.source == "feature_store":
            needed["athena"] = "training.source = 'feature_store' queries the offline store in Athena"
        for service, why in needed.items():
            if service not in self.network.interface_endpoints:
                raise ConfigError(
                    f"{path}.network.interface_endpoints",
                    list(self.network.interface_endpoints),
                    f"lacks {service!r}: {why}, and the isolated subnets reach AWS only through endpoints",
                )


@dataclass(frozen=True)
class ToolingConfig:
    """The account that runs the promotion pipeline."""

    account: str
    region: str

    def validate(self, path: str) -> None:
        _check_account(f"{path}.account", self.account)
        _check_region(f"{path}.region", self.region)


_CONNECTION_RE = re.compile(
    r"^arn:aws[a-z-]*:(codestar-connections|codeconnections):(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"connection/[0-9a-f-]{36}$"
)
_REPOSITORY_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_BRANCH_RE = re.compile(r"^[A-Za-z0-9._/-]{1,200}$")


@dataclass(frozen=True)
class PromotionConfig:
    """The delivery pipeline of the tooling account, and the route approved models take between
    environments.

    The pipeline deploys ``environments`` in order, each followed by its smoke test, and waits for a
    person before each environment in ``manual_approval_before``. Independently of the pipeline, a
    model package approved in ``promote_models_from`` is copied into ``promote_models_to``'s model
    registry, where it waits for that environment's own approval.
    """

    connection_arn: str  # a CodeConnections (CodeStar) connection of the tooling account
    repository: str  # owner/name
    branch: str = "main"
    environments: tuple[str, ...] = ("dev", "staging", "prod")
    manual_approval_before: tuple[str, ...] = ("prod",)
    promote_models_from: str = "staging"
    promote_models_to: str = "prod"
    smoke_test_latency_ms: int = 1000  # the slowest answer of the endpoint a smoke test accepts
    smoke_test_rows: int = 5  # sample customers per request the smoke test sends to each variant

    @property
    def promotes_models(self) -> bool:
        return bool(self.promote_models_from)

    def validate(self, path: str, config: PlatformConfig) -> None:
        match = _CONNECTION_RE.match(self.connection_arn)
        if not match:
            raise ConfigError(
                f"{path}.connection_arn",
                self.connection_arn,
                "must be the ARN of a CodeConnections connection, "
                "arn:aws:codeconnections:<region>:<account>:connection/<id> (see README, 'Set up promotion')",
            )
        if match["account"] != config.tooling.account:
            raise ConfigError(
                f"{path}.connection_arn",
                self.connection_arn,
                f"belongs to account {match['account']}; the pipeline runs in the tooling account "
                f"{config.tooling.account} and can use only its own connections",
            )
        if not _REPOSITORY_RE.match(self.repository):
            raise ConfigError(f"{path}.repository", self.repository, "must be owner/name, e.g. my-org/ml-platform")
        if not _BRANCH_RE.match(self.branch):
            raise ConfigError(f"{path}.branch", self.branch, "must be a branch name, e.g. main")
        known = config.environment_names
        if not self.environments:
            raise ConfigError(f"{path}.environments", [], "name the environments the pipeline deploys, in order")
        for index, name in enumerate(self.environments):
            if name not in known:
                raise ConfigError(
                    f"{path}.environments[{index}]", name, f"unknown environment; choose from {_choices(known)}"
                )
        if len(set(self.environments)) != len(self.environments):
            raise ConfigError(f"{path}.environments", list(self.environments), "lists an environment twice")
        for index, name in enumerate(self.manual_approval_before):
            if name not in self.environments:
                raise ConfigError(
                    f"{path}.manual_approval_before[{index}]",
                    name,
                    f"not deployed by the pipeline; choose from {_choices(self.environments)}",
                )
        if not 1 <= self.smoke_test_latency_ms <= 60_000:
            raise ConfigError(
                f"{path}.smoke_test_latency_ms", self.smoke_test_latency_ms, "must be between 1 and 60000"
            )
        if not 1 <= self.smoke_test_rows <= 100:
            raise ConfigError(f"{path}.smoke_test_rows", self.smoke_test_rows, "must be between 1 and 100")
        self._validate_models(path, config)

    def _validate_models(self, path: str, config: PlatformConfig) -> None:
        source, target = self.promote_models_from, self.promote_models_to
        if bool(source) != bool(target):
            name = "promote_models_to" if source else "promote_models_from"
            raise ConfigError(f"{path}.{name}", "", "set both promote_models_from and promote_models_to, or neither")
        if source:
            for name, value in (("promote_models_from", source), ("promote_models_to", target)):
                if value not in config.environment_names:
                    raise ConfigError(
                        f"{path}.{name}",
                        value,
                        f"unknown environment; choose from {_choices(config.environment_names)}",
                    )
            if source == target:
                raise ConfigError(f"{path}.promote_models_to", target, "must differ from promote_models_from")
            source_env, target_env = config.environment(source), config.environment(target)
            if source_env.region != target_env.region:
                raise ConfigError(
                    f"{path}.promote_models_to",
                    target,
                    f"is in {target_env.region} and {source} in {source_env.region}: the platform's isolated "
                    "networks reach S3 and SageMaker of their own region only, so models are promoted within "
                    "one region",
                )
            if not source_env.training.enabled:
                raise ConfigError(
                    f"{path}.promote_models_from",
                    source,
                    "trains no models (environments.training.enabled = false); promote from an environment that trains",
                )
        for env in config.environments:
            if not env.training.enabled and env.name != target:
                raise ConfigError(
                    f"environments[{config.environments.index(env)}].training.enabled",
                    False,
                    f"{env.name} would neither train models nor receive promoted ones, so it could never serve "
                    f"one; set training.enabled = true or [promotion] promote_models_to = {env.name!r}",
                )


@dataclass(frozen=True)
class PlatformConfig:
    """All environments of the platform, validated as a whole."""

    project: str
    tooling: ToolingConfig
    environments: tuple[EnvironmentConfig, ...]
    tags: Mapping[str, str] = field(default_factory=dict)
    promotion: PromotionConfig | None = None

    @property
    def environment_names(self) -> tuple[str, ...]:
        return tuple(env.name for env in self.environments)

    def resource_tags(self, env: EnvironmentConfig) -> dict[str, str]:
        """The cost-allocation tags of everything ``env`` creates: config's ``[tags]`` and Environment."""
        return {**dict(sorted(self.tags.items())), "Environment": env.name}

    def environment(self, name: str) -> EnvironmentConfig:
        for env in self.environments:
            if env.name == name:
                return env
        raise ConfigError("env", name, f"unknown environment; choose one of {_choices(self.environment_names)}")

    def validate(self) -> None:
        if not _PROJECT_RE.match(self.project):
            raise ConfigError(
                "project",
                self.project,
                "must be 2-12 lowercase letters, digits or '-', starting with a letter (it is part of bucket names)",
            )
        self.tooling.validate("tooling")
        if not self.environments:
            raise ConfigError("environments", [], "define at least one [[environments]] table")
        seen: dict[str, int] = {}
        for index, env in enumerate(self.environments):
            if env.name in seen:
                raise ConfigError(
                    f"environments[{index}].name",
                    env.name,
                    f"duplicate environment name (already used by environments[{seen[env.name]}])",
                )
            seen[env.name] = index
            env.validate(f"environments[{index}]")
        for i, first in enumerate(self.environments):
            for second in self.environments[i + 1 :]:
                if first.network.network.overlaps(second.network.network):
                    raise ConfigError(
                        f"environments[{self.environments.index(second)}].network.vpc_cidr",
                        second.network.vpc_cidr,
                        f"overlaps {first.name}'s {first.network.vpc_cidr}; give every environment its own "
                        "range so the VPCs can be peered or joined to a transit gateway later",
                    )
        for key, value in self.tags.items():
            if not isinstance(value, str) or not value:
                raise ConfigError(f"tags.{key}", value, "tag values must be non-empty strings")
        if self.promotion is not None:
            self.promotion.validate("promotion", self)
        else:
            for index, env in enumerate(self.environments):
                if not env.training.enabled:
                    raise ConfigError(
                        f"environments[{index}].training.enabled",
                        False,
                        f"{env.name} would never serve a model: without [promotion] nothing is promoted to it",
                    )


def _check_account(path: str, value: str) -> None:
    if not _ACCOUNT_RE.match(value):
        raise ConfigError(path, value, "must be a 12-digit AWS account ID, written as a quoted string")


def _check_region(path: str, value: str) -> None:
    if value not in KNOWN_REGIONS:
        raise ConfigError(path, value, f"unknown region; use one of {_choices(KNOWN_REGIONS)}")


# --- parsing ---------------------------------------------------------------------------------------


def _optional_of(tp: Any) -> Any:
    """``X`` for ``X | None``, else None."""
    if get_origin(tp) in (types.UnionType, typing.Union):
        arms = [arm for arm in get_args(tp) if arm is not type(None)]
        if len(arms) == 1:
            return arms[0]
    return None


def _type_name(tp: Any) -> str:
    if _optional_of(tp) is not None:
        return _type_name(_optional_of(tp))
    if get_origin(tp) is tuple:
        return f"list of {_type_name(get_args(tp)[0])}"
    if get_origin(tp) is Literal:
        return "one of " + _choices([repr(a) for a in get_args(tp)])
    if dataclasses.is_dataclass(tp):
        return "table"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(tp, str(tp))


def _parse_value(tp: Any, value: Any, path: str) -> Any:
    if _optional_of(tp) is not None:  # TOML has no null: a present key always has a value
        return _parse_value(_optional_of(tp), value, path)
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(path, value, "must be a table")
        return _parse_dataclass(typing.cast(type, tp), value, path)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(path, value, f"must be {_type_name(tp)}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(path, value, f"must be a {_type_name(tp)}")
        (item_type, _ellipsis) = get_args(tp)
        return tuple(_parse_value(item_type, item, f"{path}[{i}]") for i, item in enumerate(value))
    if origin in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise ConfigError(path, value, "must be a table of strings")
        return types.MappingProxyType(dict(value))
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, value, "must be an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(path, value, "must be a number")
        return float(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, value, "must be true or false")
        return value
    if tp is str:
        if not isinstance(value, str):
            hint = " (quote it)" if isinstance(value, int) else ""
            raise ConfigError(path, value, f"must be a string{hint}")
        return value
    raise TypeError(f"unsupported settings type {tp!r} at {path}")  # a bug in this module


def _parse_dataclass(cls: type, data: Mapping[str, Any], path: str) -> Any:
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = path or "top level"
        raise ConfigError(
            f"{path}.{unknown[0]}" if path else unknown[0],
            data[unknown[0]],
            f"unknown setting in {where}; allowed: {_choices(sorted(fields))}",
        )
    values: dict[str, Any] = {}
    for name, item in fields.items():
        child = f"{path}.{name}" if path else name
        if name in data:
            values[name] = _parse_value(hints[name], data[name], child)
        elif item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING:
            raise ConfigError(child, None, f"missing required setting ({_type_name(hints[name])})")
    return cls(**values)


def parse_config(data: Mapping[str, Any]) -> PlatformConfig:
    """Build and validate the platform settings from parsed TOML (a plain mapping)."""
    config = _parse_dataclass(PlatformConfig, data, "")
    typing.cast(PlatformConfig, config).validate()
    return typing.cast(PlatformConfig, config)


def load_config(path: Path = DEFAULT_CONFIG_PATH) -> PlatformConfig:
    """Read ``path`` (TOML) and return the validated settings; errors name the file."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError("config file", str(path), "not found; copy config/environments.toml and edit it") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError("config file", str(path), f"is not valid TOML: {error}") from None
    try:
        return parse_config(data)
    except ConfigError as error:
        raise ConfigError(error.field_path, error.value, error.problem, source=str(path)) from None


__all__ = [
    "ComputeSettings",
    "ConfigError",
    "DataSettings",
    "EnvironmentConfig",
    "FeatureStoreSettings",
    "MonitoringSettings",
    "MonitoringThresholds",
    "NetworkSettings",
    "OperationsSettings",
    "PlatformConfig",
    "PromotionConfig",
    "ServingSettings",
    "ToolingConfig",
    "TrainingSettings",
    "TuningSettings",
    "VariantSettings",
    "check_instance_kind",
    "check_instance_type",
    "is_gpu_instance",
    "load_config",
    "parse_config",
]
