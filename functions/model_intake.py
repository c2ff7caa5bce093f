"""Registers, in this environment's model registry, the models another environment approved.

Runs in the receiving environment (prod by default) on the source environment's "SageMaker Model
Package State Change" events (staging's approvals, forwarded to this account's event bus). For an
Approved package of the source group it:

1. reads the package across accounts (the source group's resource policy allows this function);
2. copies its artifact (``ModelDataUrl``), its evaluation (``ModelMetrics``) and its baselines
   (``DriftCheckBaselines``) into this environment's buckets, under the same prefixes the training
   pipeline writes (``pipelines/``, ``baselines/``), with the SHA-256 of the source bytes sent along
   (S3 checks it on arrival) and checked again by reading each copy back;
3. points the serving image at this account's copy of the same image (the delivery pipeline publishes
   the serving image to every environment) and checks that its digest is the source's;
4. registers the copy in this environment's group as ``PendingManualApproval``, with the source's
   customer metadata (its ``Variant``) plus ``SourceModelPackageArn`` and ``ModelDataSha256``;
5. tells the alert topic that a model waits for approval.

A copy whose digest differs from the source, a ``ModelDataSha256`` recorded on the source package that
the bytes do not match, an artifact outside the source's buckets or a serving image this account does
not have is refused: nothing is registered, the partial copies are deleted and the alert topic says
why. A package promoted before is not registered twice.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

import boto3
from botocore.exceptions import ClientError

APPROVED = "Approved"
PENDING = "PendingManualApproval"
CHUNK = 1024 * 1024
# What S3 answers when the bytes it received do not match the checksum sent with them.
DIGEST_ERRORS = ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch")
CONTAINER_FIELDS = (
    "ContainerHostname",
    "Image",
    "ImageDigest",
    "ModelDataUrl",
    "Environment",
    "Framework",
    "FrameworkVersion",
    "NearestModelName",
)
SPEC_FIELDS = (
    "SupportedContentTypes",
    "SupportedResponseMIMETypes",
    "SupportedRealtimeInferenceInstanceTypes",
    "SupportedTransformInstanceTypes",
)


@cache
def client(service: str) -> Any:
    return boto3.client(service)


def log(decision: str, **details: Any) -> None:
    print(json.dumps({"decision": decision, **details}, default=str, sort_keys=True))


class RefusedError(Exception):
    """The package must not be registered; the message says why and what to do."""


class Settings:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environment = environ["ENVIRONMENT"]
        self.source_environment = environ["SOURCE_ENVIRONMENT"]
        self.source_account = environ["SOURCE_ACCOUNT"]
        self.source_group = environ["SOURCE_GROUP"]
        self.source_prefix = environ["SOURCE_PACKAGE_ARN_PREFIX"]
        self.group = environ["MODEL_PACKAGE_GROUP"]
        # {"<source bucket>": {"bucket": "<this environment's bucket>", "prefix": "pipelines/promoted/<group>/"}}
        self.buckets: dict[str, dict[str, str]] = json.loads(environ["BUCKETS"])
        self.source_images = environ["SOURCE_IMAGE_REPOSITORY"]  # <account>.dkr.ecr.<region>.amazonaws.com/<name>
        self.images = environ["IMAGE_REPOSITORY"]
        self.topic = environ["ALERT_TOPIC_ARN"]
        self.max_bytes = int(environ.get("MAX_OBJECT_BYTES", str(400 * 1024 * 1024)))


def settings() -> Settings:
    return Settings(os.environ)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    config = settings()
    detail = event.get("detail", {})
    arn = str(detail.get("ModelPackageArn", ""))
    if (
        event.get("account") != config.source_account
        or detail.get("ModelPackageGroupName") != config.source_group
        or not arn.startswith(config.source_prefix)
    ):
        log("ignored", reason="not a package of the source group", package=arn, source_group=config.source_group)
        return {"status": "ignored"}
    if detail.get("ModelApprovalStatus") != APPROVED:
        log("ignored", reason=f"approval status is {detail.get('ModelApprovalStatus')}", package=arn)
        return {"status": "ignored"}
    sagemaker = client("sagemaker")
    package = sagemaker.describe_model_package(ModelPackageName=arn)
    if package.get("ModelApprovalStatus") != APPROVED:
        log("ignored", reason=f"the package is {package.get('ModelApprovalStatus')} now", package=arn)
        return {"status": "ignored"}
    existing = promoted_copy(config, arn)
    if existing:
        log("unchanged", reason="promoted before", package=arn, copy=existing)
        return {"status": "exists", "copy": existing}
    copies: list[tuple[str, str]] = []
    try:
        target = promote(config, package, copies)
    except RefusedError as refusal:
        for bucket, key in copies:
            client("s3").delete_object(Bucket=bucket, Key=key)
        message = (
            f"Model package {arn}, approved in {config.source_environment}, was NOT registered in "
            f"{config.environment}: {refusal}"
        )
        alert(config, f"{config.environment}: promoted model refused", message)
        log("refused", package=arn, reason=str(refusal))
        return {"status": "refused", "reason": str(refusal)}
    return target


def promoted_copy(config: Settings, source_arn: str) -> str | None:
    """The ARN of this group's copy of ``source_arn``, if one was registered before."""
    sagemaker = client("sagemaker")
    paginator = sagemaker.get_paginator("list_model_packages")
    for page in paginator.paginate(ModelPackageGroupName=config.group, SortBy="CreationTime", SortOrder="Descending"):
        for summary in page["ModelPackageSummaryList"]:
            described = sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
            if (described.get("CustomerMetadataProperties") or {}).get("SourceModelPackageArn") == source_arn:
                return str(summary["ModelPackageArn"])
    return None


def promote(config: Settings, package: dict[str, Any], copies: list[tuple[str, str]]) -> dict[str, Any]:
    source_arn = package["ModelPackageArn"]
    version = source_arn.rsplit("/", 1)[1]
    metadata = dict(package.get("CustomerMetadataProperties") or {})
    destinations: dict[str, str] = {}  # source URI -> destination URI
    digests: dict[str, str] = {}
    for uri in artifact_uris(package):
        if uri in destinations:
            continue
        bucket, key = copy_target(config, uri, version, destinations.values())
        digests[uri] = copy_verified(config, uri, bucket, key, copies)
        destinations[uri] = f"s3://{bucket}/{key}"

    spec = package["InferenceSpecification"]
    containers = []
    for container in spec["Containers"]:
        rewritten = {k: copy.deepcopy(v) for k, v in container.items() if k in CONTAINER_FIELDS}
        if "ModelDataUrl" in rewritten:
            rewritten["ModelDataUrl"] = destinations[rewritten["ModelDataUrl"]]
        rewritten.update(local_image(config, container))
        containers.append(rewritten)
    model_data = spec["Containers"][0].get("ModelDataUrl")
    model_digest = digests.get(model_data, "") if model_data else ""
    recorded = metadata.get("ModelDataSha256")
    if recorded and model_digest and recorded != model_digest:
        raise RefusedError(
            f"its artifact {model_data} has SHA-256 {model_digest}, but the package records ModelDataSha256 "
            f"{recorded}: the bytes changed after registration. Retrain, or register the intended artifact."
        )
    metadata.update(
        {
            "SourceModelPackageArn": source_arn,
            "SourceEnvironment": config.source_environment,
            **({"ModelDataSha256": model_digest} if model_digest else {}),
        }
    )
    request: dict[str, Any] = {
        "ModelPackageGroupName": config.group,
        "ModelPackageDescription": (f"{package.get('ModelPackageDescription', 'Model')} (promoted from {source_arn})")[
            :1024
        ],
        "ModelApprovalStatus": PENDING,
        "InferenceSpecification": {
            "Containers": containers,
            **{k: spec[k] for k in SPEC_FIELDS if k in spec},
        },
        "CustomerMetadataProperties": metadata,
        "ClientToken": hashlib.sha256(source_arn.encode()).hexdigest()[:32],
    }
    for field in ("ModelMetrics", "DriftCheckBaselines"):
        if package.get(field):
            request[field] = rewrite_uris(package[field], destinations)
    if package.get("MetadataProperties"):
        request["MetadataProperties"] = package["MetadataProperties"]
    created = client("sagemaker").create_model_package(**request)
    target_arn = created["ModelPackageArn"]
    message = (
        f"Model package {source_arn}, approved in {config.source_environment}, is registered in "
        f"{config.environment} as {target_arn} and waits for approval ({PENDING}). Same artifact bytes "
        f"(SHA-256 {model_digest or 'n/a'}), its evaluation and baselines. Approve it to deploy it:\n"
        f"aws sagemaker update-model-package --model-package-arn {target_arn} --model-approval-status Approved"
    )
    alert(config, f"{config.environment}: a promoted model waits for approval", message)
    log("registered", package=source_arn, copy=target_arn, sha256=model_digest, objects=destinations)
    return {"status": "registered", "copy": target_arn, "sha256": model_digest}


def artifact_uris(package: dict[str, Any]) -> list[str]:
    """Every S3 object the package names: model data, metrics and baselines, in a stable order."""
    uris = [c["ModelDataUrl"] for c in package["InferenceSpecification"]["Containers"] if c.get("ModelDataUrl")]
    for field in ("ModelMetrics", "DriftCheckBaselines"):
        uris += [value for key, value in _walk(package.get(field) or {}) if key == "S3Uri"]
    return uris


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def rewrite_uris(value: Any, destinations: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            k: destinations[v] if k == "S3Uri" and isinstance(v, str) else rewrite_uris(v, destinations)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [rewrite_uris(item, destinations) for item in value]
    return value


def split_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise RefusedError(f"{uri!r} is not an s3://bucket/key URI")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def copy_target(config: Settings, uri: str, version: str, taken: Any) -> tuple[str, str]:
    bucket, key = split_uri(uri)
    route = config.buckets.get(bucket)
    if route is None:
        raise RefusedError(
            f"{uri} is outside the {config.source_environment} buckets this environment copies from "
            f"({', '.join(sorted(config.buckets))}); register packages whose artifacts the training pipeline wrote"
        )
    target_key = f"{route['prefix']}{version}/{key.rsplit('/', 1)[-1]}"
    if f"s3://{route['bucket']}/{target_key}" in taken:
        raise RefusedError(f"two artifacts of the package would both be copied to s3://{route['bucket']}/{target_key}")
    return route["bucket"], target_key


def copy_verified(config: Settings, uri: str, bucket: str, key: str, copies: list[tuple[str, str]]) -> str:
    """Copy ``uri`` to ``bucket/key``; return the SHA-256 (hex) both sides have, or refuse."""
    s3 = client("s3")
    source_bucket, source_key = split_uri(uri)
    try:
        source = s3.get_object(Bucket=source_bucket, Key=source_key)
    except ClientError as error:
        code = error.response["Error"]["Code"]
        if code in ("AccessDenied", "NoSuchKey", "403", "404"):
            raise RefusedError(
                f"{uri} cannot be read ({code}); it must exist under the training pipeline's prefixes"
            ) from None
        raise
    size = int(source.get("ContentLength", 0))
    if size > config.max_bytes:
        raise RefusedError(f"{uri} is {size} bytes, above the {config.max_bytes} bytes this function copies")
    digest = hashlib.sha256()
    with tempfile.TemporaryFile() as spool:
        for chunk in source["Body"].iter_chunks(CHUNK):
            digest.update(chunk)
            spool.write(chunk)
        spool.seek(0)
        copies.append((bucket, key))
        try:
            s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=spool,
                ChecksumSHA256=base64.b64encode(digest.digest()).decode(),  # S3 refuses bytes that differ
                Metadata={"source-uri": uri[:1024], "sha256": digest.hexdigest()},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] not in DIGEST_ERRORS:
                raise
            raise RefusedError(
                f"S3 refused the copy of {uri} to s3://{bucket}/{key}: its bytes do not match the source's SHA-256 "
                f"{digest.hexdigest()} ({error.response['Error']['Code']}). Approve the package in "
                f"{config.source_environment} again to retry."
            ) from None
    copied = hashlib.sha256()
    for chunk in s3.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(CHUNK):
        copied.update(chunk)
    if copied.hexdigest() != digest.hexdigest():
        raise RefusedError(
            f"the copy of {uri} at s3://{bucket}/{key} has SHA-256 {copied.hexdigest()}, the source "
            f"{digest.hexdigest()}: the bytes changed on the way. Approve the package in "
            f"{config.source_environment} again to retry."
        )
    log("copied", source=uri, target=f"s3://{bucket}/{key}", sha256=digest.hexdigest(), bytes=size)
    return digest.hexdigest()


def local_image(config: Settings, container: Mapping[str, Any]) -> dict[str, str]:
    """The image and digest this environment serves the container with."""
    image = str(container.get("Image", ""))
    if not image.startswith(f"{config.source_account}.dkr.ecr."):
        return {}  # an image of AWS's registries: every account can pull it as it is
    repository, separator, tag = image.partition(":") if "@" not in image else image.partition("@")
    if repository != config.source_images or not tag:
        raise RefusedError(
            f"its serving image {image} is not in {config.source_environment}'s image-asset repository "
            f"{config.source_images}; only images the delivery pipeline publishes to every environment can be promoted"
        )
    name = config.images.split("/", 1)[1]
    image_id = {"imageTag": tag} if separator == ":" else {"imageDigest": tag}
    try:
        found = client("ecr").describe_images(repositoryName=name, imageIds=[image_id])["imageDetails"]
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("ImageNotFoundException", "RepositoryNotFoundException"):
            raise
        found = []
    if not found:
        raise RefusedError(
            f"its serving image {tag} is not in {config.environment}'s repository {config.images}; deploy "
            f"{config.environment} with the same code first (the delivery pipeline publishes the image), then "
            f"approve the package in {config.source_environment} again"
        )
    local_digest = str(found[0]["imageDigest"])
    source_digest = container.get("ImageDigest")
    if source_digest and source_digest != local_digest:
        raise RefusedError(
            f"its serving image {tag} has digest {source_digest} in {config.source_environment} but {local_digest} "
            f"in {config.environment}: the two environments run different images under one tag"
        )
    return {
        "Image": f"{config.images}:{tag}" if separator == ":" else f"{config.images}@{tag}",
        "ImageDigest": local_digest,
    }


def alert(config: Settings, subject: str, message: str) -> None:
    client("sns").publish(TopicArn=config.topic, Subject=subject[:100], Message=message)
