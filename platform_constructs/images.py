"""URIs of AWS's managed SageMaker images, from the SageMaker SDK's image URI registry, offline.

The registry is the JSON data the SDK ships (``sagemaker-core``, ``image_uri_config/*.json``): the
ECR account of every image in every region. It is read as package data, without importing the SDK,
so synth stays free of boto3 and of the network.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any, Literal

# The managed XGBoost framework container the training and inference code target (xgboost 3.2.0).
XGBOOST_FRAMEWORK_VERSION = "3.2-0"
SDK_DISTRIBUTION = "sagemaker-core"
_CONFIG_DIR = "sagemaker/core/image_uri_config"


class ImageNotAvailableError(LookupError):
    """The SDK's registry has no such image for the region."""


@cache
def _registry(framework: str) -> dict[str, Any]:
    try:
        path = Path(str(distribution(SDK_DISTRIBUTION).locate_file(f"{_CONFIG_DIR}/{framework}.json")))
    except PackageNotFoundError:
        raise ImageNotAvailableError(
            f"the SageMaker SDK's image registry ({SDK_DISTRIBUTION}) is not installed; run `make setup`"
        ) from None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _uri(config: dict[str, Any], region: str, tag: str, what: str) -> str:
    registries: dict[str, str] = config["registries"]
    if region not in registries:
        raise ImageNotAvailableError(f"{what} is not published in {region}; regions: {', '.join(sorted(registries))}")
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{registries[region]}.dkr.ecr.{region}.{suffix}/{config['repository']}:{tag}"


def xgboost_image(region: str, scope: Literal["training", "inference"] = "training") -> str:
    """The managed XGBoost framework image (script mode), e.g. ``...sagemaker-xgboost:3.2-0``."""
    versions = _registry("xgboost")[scope]["versions"]
    if XGBOOST_FRAMEWORK_VERSION not in versions:
        raise ImageNotAvailableError(f"XGBoost {XGBOOST_FRAMEWORK_VERSION} is not in the SDK's registry ({scope})")
    return _uri(versions[XGBOOST_FRAMEWORK_VERSION], region, XGBOOST_FRAMEWORK_VERSION, f"XGBoost {scope} image")


def model_monitor_image(region: str) -> str:
    """The Model Monitor analyzer image that computes data-quality baselines and reports."""
    return _uri(_registry("model-monitor")["versions"][""], region, "latest", "Model Monitor analyzer image")


def clarify_image(region: str) -> str:
    """The SageMaker Clarify processing image (model bias and explainability monitors)."""
    return _uri(_registry("clarify")["processing"]["versions"]["1.0"], region, "1.0", "SageMaker Clarify image")
