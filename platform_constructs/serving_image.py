"""The serving container image: inference_code/ on top of the managed XGBoost image of the region."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Stack
from aws_cdk import aws_ecr_assets as ecr_assets
from constructs import Construct

from platform_constructs.images import xgboost_image

INFERENCE_CODE_DIR = Path(__file__).resolve().parent.parent / "inference_code"


class ServingImage(Construct):
    """A CDK image asset; CDK builds and pushes it on deploy (synth only stages the build context).

    The build pulls the managed base image from AWS's ECR account for the region, so log Docker in to
    that registry first (README, "Bootstrap and deploy").
    """

    def __init__(self, scope: Construct, id_: str) -> None:
        super().__init__(scope, id_)
        self.base_image = xgboost_image(Stack.of(self).region, "inference")
        self.asset = ecr_assets.DockerImageAsset(
            self,
            "Image",
            directory=str(INFERENCE_CODE_DIR),
            build_args={"BASE_IMAGE": self.base_image},
            exclude=["__pycache__", "**/__pycache__", "*.pyc", ".pytest_cache"],
            platform=ecr_assets.Platform.LINUX_AMD64,
        )
        self.image_uri = self.asset.image_uri
        self.repository = self.asset.repository
