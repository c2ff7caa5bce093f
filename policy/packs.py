"""Registers every policy pack on an app: an unacknowledged finding of any of them fails synth."""

from __future__ import annotations

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks, NagPack, NIST80053R5Checks, PCIDSS321Checks

from policy.endpoint_variant_guard import EndpointVariantGuard
from policy.feature_group_guard import FeatureGroupGuard
from policy.ml_platform_rules import MlPlatformChecks
from policy.sagemaker_api_rules import SageMakerApiChecks

# The compliance packs of cdk-nag v3 the platform passes, with the rule-ID prefix each reports.
NAG_PACKS: dict[str, type[NagPack]] = {
    "AwsSolutions": AwsSolutionsChecks,
    "HIPAA.Security": HIPAASecurityChecks,
    "NIST.800.53.R5": NIST80053R5Checks,
    "PCI.DSS.321": PCIDSS321Checks,
}


def register_policy_packs(app: App) -> None:
    """Add the four cdk-nag packs, the project's own rules (MlPlatform, SageMakerApi), the feature-group
    replacement guard and the autoscaled-variant guard as validation plugins of ``app``."""
    for pack in NAG_PACKS.values():
        Validations.of(app).add_plugins(pack(app, verbose=True))
    Validations.of(app).add_plugins(
        MlPlatformChecks(), SageMakerApiChecks(), FeatureGroupGuard(), EndpointVariantGuard()
    )
