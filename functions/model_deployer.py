"""Deploys the model packages approved in this environment's registry, and says when a rollout rolled back.

The serving stack reads the package each variant serves from an SSM parameter (a CloudFormation
parameter of type ``AWS::SSM::Parameter::Value<String>``), so whatever is recorded there is what every
deployment of that stack serves, by hand or by the delivery pipeline. This function is the only
writer of those parameters, and it reacts to three kinds of event:

- **A model package of this environment's group changed state** ("SageMaker Model Package State
  Change"). When it is Approved, the package's ``Variant`` customer-metadata property (default: the
  first variant, the champion) names the variant; the function records the package ARN in that
  variant's parameter and updates the serving stack in place (its previous template, parameters
  re-resolved, with the rollout role). CloudFormation then replaces the variant's model and endpoint
  config and updates the endpoint, whose blue/green deployment (canary or linear traffic shifting,
  rollback on the variants' alarms) protects the rollout. Pending and rejected packages change
  nothing; an unknown variant is reported to the alert topic and changes nothing.
- **The serving stack reached a final state** ("CloudFormation Stack Status Change"). After a
  rollback, or when the endpoint does not run the endpoint config the stack declares (SageMaker rolled
  the deployment back), the parameters are restored to the packages the endpoint still serves (so the
  next deployment does not retry the failed one) and the alert topic is told which package was rolled
  back and why. After a successful update, approvals recorded while the stack was busy are deployed.
- **CloudFormation creates or updates the parameters** (a custom resource of the deployment stack):
  each variant's parameter is created with ``none`` if it does not exist, and never overwritten, so no
  deployment can reset an approved model.

Settings come from environment variables; boto3 clients are created lazily so tests can replace them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.request
from collections.abc import Mapping
from functools import cache
from typing import Any

import boto3
from botocore.exceptions import ClientError

NO_MODEL = "none"
VARIANT_KEY = "Variant"
APPROVED = "Approved"
STACK_PARAMETER_SUFFIX = "ModelPackageArn"
ROLLED_BACK = ("UPDATE_ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_FAILED")
SETTLED = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE")
REQUEST_TOKEN_PREFIX = "model-deployer-"  # noqa: S105  (a CloudFormation request-token prefix, not a secret)


@cache
def client(service: str) -> Any:
    return boto3.client(service)


def log(decision: str, **details: Any) -> None:
    print(json.dumps({"decision": decision, **details}, default=str, sort_keys=True))


class Settings:
    """What this function deploys, from its environment variables."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environment = environ["ENVIRONMENT"]
        # {"Champion": "/churn/prod/serving/Champion/model-package-arn", ...}; the first is the default variant.
        self.parameters: dict[str, str] = json.loads(environ["PARAMETERS"])
        self.group = environ["MODEL_PACKAGE_GROUP"]
        self.package_prefix = environ["MODEL_PACKAGE_ARN_PREFIX"]  # arn:...:model-package/<group>/
        self.stack = environ["SERVING_STACK"]
        self.endpoint = environ["ENDPOINT_NAME"]
        self.rollout_role = environ["ROLLOUT_ROLE_ARN"]
        self.topic = environ["ALERT_TOPIC_ARN"]

    @property
    def variants(self) -> list[str]:
        return list(self.parameters)

    @property
    def first(self) -> str:
        return self.variants[0]

    @property
    def allowed_pattern(self) -> str:
        """What SSM accepts in a variant parameter: ``none`` or a version of this environment's group."""
        return f"^{NO_MODEL}$|^{re.escape(self.package_prefix)}[0-9]+$"

    def is_own_package(self, arn: str) -> bool:
        return arn.startswith(self.package_prefix) and arn[len(self.package_prefix) :].isdigit()


def settings() -> Settings:
    return Settings(os.environ)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    config = settings()
    if "RequestType" in event:
        return create_parameters(event, config)
    if event.get("detail-type") == "SageMaker Model Package State Change":
        return on_package_state(event, config)
    if event.get("detail-type") == "CloudFormation Stack Status Change":
        return on_stack_status(event, config)
    raise ValueError(
        f"unexpected event {event.get('detail-type')!r}: this function handles model package "
        "state changes, the serving stack's status changes and its CloudFormation custom resource"
    )


# --- approvals -------------------------------------------------------------------------------------


def on_package_state(event: dict[str, Any], config: Settings) -> dict[str, Any]:
    detail = event.get("detail", {})
    arn = str(detail.get("ModelPackageArn", ""))
    status = detail.get("ModelApprovalStatus")
    if detail.get("ModelPackageGroupName") != config.group or not config.is_own_package(arn):
        log("ignored", reason="not a package of this environment's group", package=arn, group=config.group)
        return {"status": "ignored"}
    if status != APPROVED:
        log("ignored", reason=f"approval status is {status}, not {APPROVED}", package=arn)
        return {"status": "ignored"}
    package = client("sagemaker").describe_model_package(ModelPackageName=arn)
    if package.get("ModelApprovalStatus") != APPROVED:  # the event may be older than the package's state
        log("ignored", reason=f"the package is {package.get('ModelApprovalStatus')} now", package=arn)
        return {"status": "ignored"}
    variant = (package.get("CustomerMetadataProperties") or {}).get(VARIANT_KEY, config.first)
    if variant not in config.parameters:
        message = (
            f"Model package {arn} was approved for variant {variant!r}, which the {config.environment} endpoint "
            f"{config.endpoint} does not have (variants: {', '.join(config.variants)}). Nothing was deployed. "
            f"Set its customer metadata property {VARIANT_KEY} to one of them (or remove it for "
            f"{config.first}), set the package to PendingManualApproval and approve it again."
        )
        alert(config, f"{config.environment}: approved model has an unknown variant", message)
        log("refused", reason="unknown variant", package=arn, variant=variant)
        return {"status": "refused", "variant": variant}
    current = read_parameters(config)
    if current[variant] == arn:
        log("unchanged", reason="already recorded", package=arn, variant=variant)
        return deploy(config, reason=f"{arn} approved again for {variant}")
    write_parameter(config, variant, arn)
    log("recorded", package=arn, variant=variant, previous=current[variant], parameter=config.parameters[variant])
    return deploy(config, reason=f"{arn} approved for {variant}")


# --- deploying -------------------------------------------------------------------------------------


def read_parameters(config: Settings) -> dict[str, str]:
    names = list(config.parameters.values())
    found = client("ssm").get_parameters(Names=names)
    values = {p["Name"]: p["Value"] for p in found.get("Parameters", [])}
    missing = [name for name in names if name not in values]
    if missing:
        raise RuntimeError(
            f"SSM parameters {', '.join(missing)} do not exist; deploy the {config.environment} deployment "
            "stack first (it creates them)"
        )
    return {variant: values[name] for variant, name in config.parameters.items()}


def write_parameter(config: Settings, variant: str, value: str) -> None:
    client("ssm").put_parameter(
        Name=config.parameters[variant],
        Value=value,
        Type="String",
        Overwrite=True,
        AllowedPattern=config.allowed_pattern,
    )


def stack_parameter(variant: str) -> str:
    return f"{variant}{STACK_PARAMETER_SUFFIX}"


def describe_stack(config: Settings) -> dict[str, Any]:
    stacks = client("cloudformation").describe_stacks(StackName=config.stack)["Stacks"]
    return dict(stacks[0])


def declared_packages(config: Settings, stack: dict[str, Any]) -> dict[str, str | None]:
    """The package each variant parameter resolved to when the stack was last deployed."""
    resolved = {p["ParameterKey"]: p.get("ResolvedValue") for p in stack.get("Parameters", [])}
    return {variant: resolved.get(stack_parameter(variant)) for variant in config.variants}


def deploy(config: Settings, *, reason: str) -> dict[str, Any]:
    """Update the serving stack in place when a parameter differs from what it was deployed with."""
    try:
        stack = describe_stack(config)
    except ClientError as error:
        if "does not exist" in str(error):
            log("waiting", reason=f"{config.stack} is not deployed yet; its first deployment reads the parameters")
            return {"status": "no-stack"}
        raise
    status = stack["StackStatus"]
    if status.endswith("_IN_PROGRESS"):
        log("waiting", reason=f"{config.stack} is {status}; deploying when it settles", trigger=reason)
        return {"status": "busy"}
    if status not in SETTLED:
        message = (
            f"The {config.environment} serving stack {config.stack} is {status}: recorded model packages cannot "
            f"be deployed until it is repaired ({stack.get('StackStatusReason', 'no reason given')}). Trigger: "
            f"{reason}."
        )
        alert(config, f"{config.environment}: serving stack needs attention", message)
        log("blocked", stack_status=status, trigger=reason)
        return {"status": "blocked"}
    desired = read_parameters(config)
    declared = declared_packages(config, stack)
    pending = {v: desired[v] for v in config.variants if declared[v] is not None and desired[v] != declared[v]}
    if not pending:
        log("in-sync", trigger=reason, packages=desired)
        return {"status": "in-sync"}
    token = REQUEST_TOKEN_PREFIX + hashlib.sha256(json.dumps(desired, sort_keys=True).encode()).hexdigest()[:32]
    try:
        client("cloudformation").update_stack(
            StackName=config.stack,
            UsePreviousTemplate=True,
            # SSM-typed parameters keep their parameter names and resolve to the values recorded now.
            Parameters=[{"ParameterKey": p["ParameterKey"], "UsePreviousValue": True} for p in stack["Parameters"]],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
            RoleARN=config.rollout_role,
            ClientRequestToken=token,
        )
    except ClientError as error:
        text = str(error)
        if "No updates are to be performed" in text:
            log("in-sync", trigger=reason, packages=desired)
            return {"status": "in-sync"}
        if "can not be updated" in text or "cannot be updated" in text:  # another operation started
            log("waiting", reason=text, trigger=reason)
            return {"status": "busy"}
        raise
    log("deploying", stack=config.stack, packages=pending, trigger=reason, token=token)
    return {"status": "deploying", "packages": pending}


# --- after a deployment ----------------------------------------------------------------------------


def on_stack_status(event: dict[str, Any], config: Settings) -> dict[str, Any]:
    detail = event.get("detail", {})
    status = detail.get("status-details", {}).get("status", "")
    stack_reason = detail.get("status-details", {}).get("status-reason") or ""
    if status in ROLLED_BACK:
        return handle_rollback(config, f"the stack update ended in {status}: {stack_reason or 'no reason given'}")
    if status not in SETTLED:
        log("ignored", reason=f"stack status {status}")
        return {"status": "ignored"}
    mismatch = endpoint_mismatch(config)
    if mismatch:
        result = handle_rollback(config, mismatch)
        deploy(config, reason="realign the serving stack with the endpoint after a rollback")
        return result
    return deploy(config, reason=f"the serving stack reached {status}")


def describe_endpoint(config: Settings) -> dict[str, Any] | None:
    try:
        return dict(client("sagemaker").describe_endpoint(EndpointName=config.endpoint))
    except ClientError as error:
        if "Could not find endpoint" in str(error):
            return None
        raise


def declared_endpoint_config(config: Settings) -> str | None:
    """The physical name of the endpoint config the serving stack declares (None without an endpoint)."""
    paginator = client("cloudformation").get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=config.stack):
        for resource in page["StackResourceSummaries"]:
            if resource["ResourceType"] == "AWS::SageMaker::EndpointConfig":
                return str(resource.get("PhysicalResourceId") or "") or None
    return None


def endpoint_mismatch(config: Settings) -> str:
    """Why the endpoint does not run what the stack declares, or "" when it does."""
    endpoint = describe_endpoint(config)
    declared = declared_endpoint_config(config)
    if endpoint is None or declared is None:
        return ""
    running = endpoint.get("EndpointConfigName")
    if running == declared:
        return ""
    failure = endpoint.get("FailureReason") or "SageMaker reported no reason"
    return (
        f"the endpoint {config.endpoint} runs endpoint config {running}, not {declared} that the stack deployed: "
        f"SageMaker rolled the deployment back ({failure})"
    )


def served_packages(config: Settings) -> dict[str, str] | None:
    """The package each variant of the endpoint serves now, read from the endpoint itself; None when
    there is no endpoint or its endpoint config is gone."""
    sagemaker = client("sagemaker")
    endpoint = describe_endpoint(config)
    if endpoint is None:
        return None
    try:
        endpoint_config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    except ClientError:
        return None
    served = {}
    for variant in endpoint_config.get("ProductionVariants", []) + endpoint_config.get("ShadowProductionVariants", []):
        model = sagemaker.describe_model(ModelName=variant["ModelName"])
        container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
        if container.get("ModelPackageName"):
            served[variant["VariantName"]] = container["ModelPackageName"]
    return served


def handle_rollback(config: Settings, why: str) -> dict[str, Any]:
    """Restore the parameters of rolled-back variants to what the endpoint still serves, and tell a person."""
    desired = read_parameters(config)
    served = served_packages(config)
    declared = declared_packages(config, describe_stack(config))

    def effective(values: Mapping[str, str | None], variant: str) -> str | None:
        value = values.get(variant)
        return values.get(config.first) if value in (None, NO_MODEL) and variant != config.first else value

    rolled_back: dict[str, tuple[str, str]] = {}  # variant -> (rolled back package, restored value)
    for variant in config.variants:
        wanted = desired[variant]
        if wanted == NO_MODEL:
            continue
        if served is not None:
            actual = served.get(variant)
            if effective(desired, variant) == actual:
                continue
            restored = actual or NO_MODEL
            if variant != config.first and actual is not None and actual == served.get(config.first):
                restored = NO_MODEL  # it served the champion's package: follow the champion again
        else:  # no endpoint (a first deployment rolled back) or its config is gone
            previous = declared.get(variant)
            if previous == wanted:
                continue
            restored = previous or NO_MODEL
        rolled_back[variant] = (wanted, restored)
    if not rolled_back:
        message = f"The {config.environment} serving stack rolled back ({why}); no recorded model package was affected."
        alert(config, f"{config.environment}: serving stack rolled back", message)
        log("rollback", reason=why, packages={})
        return {"status": "rolled-back", "packages": {}}
    for variant, (_, restored) in rolled_back.items():
        write_parameter(config, variant, restored)
    lines = [
        f"{variant}: model package {package} was rolled back; {config.parameters[variant]} is {restored} again"
        + (" (the endpoint serves it)" if restored != NO_MODEL else "")
        for variant, (package, restored) in rolled_back.items()
    ]
    message = (
        f"The rollout to the {config.environment} endpoint {config.endpoint} was rolled back: {why}.\n"
        + "\n".join(lines)
        + "\nThe endpoint's alarms and the serving stack's events say why. To try the package again, set it to "
        "PendingManualApproval and approve it again."
    )
    alert(config, f"{config.environment}: model rollout rolled back", message)
    log("rollback", reason=why, packages={v: p for v, (p, _) in rolled_back.items()})
    return {"status": "rolled-back", "packages": {v: p for v, (p, _) in rolled_back.items()}}


def alert(config: Settings, subject: str, message: str) -> None:
    client("sns").publish(TopicArn=config.topic, Subject=subject[:100], Message=message)


# --- the parameters' custom resource ---------------------------------------------------------------


def create_parameters(event: dict[str, Any], config: Settings) -> dict[str, Any]:
    """Create each variant's parameter with ``none`` unless it exists; never overwrite, never delete."""
    physical_id = f"{config.stack}-model-package-parameters"
    status, reason = "SUCCESS", ""
    try:
        if event["RequestType"] in ("Create", "Update"):
            names = event.get("ResourceProperties", {}).get("Parameters") or config.parameters
            for variant, name in names.items():
                try:
                    client("ssm").put_parameter(
                        Name=name,
                        Value=NO_MODEL,
                        Type="String",
                        Overwrite=False,
                        AllowedPattern=config.allowed_pattern,
                        Description=f"Model package the {variant} variant of {config.endpoint} serves "
                        f"({NO_MODEL}: none approved yet). Written by the model deployer.",
                    )
                    log("parameter-created", parameter=name)
                except ClientError as error:
                    if error.response["Error"]["Code"] != "ParameterAlreadyExists":
                        raise
                    log("parameter-kept", parameter=name)
    except Exception as error:  # noqa: BLE001  (CloudFormation must hear of every failure, or it waits an hour)
        status, reason = "FAILED", f"{type(error).__name__}: {error}"
        log("parameter-failed", reason=reason)
    respond(event, status, reason, physical_id)
    return {"status": status}


def respond(event: dict[str, Any], status: str, reason: str, physical_id: str) -> None:
    url = event["ResponseURL"]
    if not url.startswith("https://"):
        raise ValueError(f"refusing to answer CloudFormation at a non-HTTPS URL {url[:60]!r}")
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:1000] or "done",
            "PhysicalResourceId": physical_id,
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310  (https only, checked above)
        url, data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310  (https only, checked above)
        answer.read()
