"""Accepted findings on the deploy-time functions CDK itself adds, in one reviewed place.

Two CDK features the platform relies on are implemented by CDK as custom-resource providers, that
is, a Lambda function CloudFormation invokes while it deploys: closing the VPC's default security
group (``restrict_default_security_group``) and emptying dev buckets before deletion
(``auto_delete_objects``). Their code is CDK's; the findings below are about how such a function is
hosted, and each is accepted on that provider's handler alone.
"""

from __future__ import annotations

import jsii
from aws_cdk import CfnResource, IAspect
from constructs import IConstruct

from policy.acknowledge import ignore_cfn_lint, skip_checkov

KNOWN_PROVIDERS = (
    "Custom::VpcRestrictDefaultSGCustomResourceProvider",
    "Custom::S3AutoDeleteObjectsCustomResourceProvider",
)

_CHECKOV_SKIPS = {
    "CKV_AWS_115": "CDK deploy-time provider: CloudFormation invokes it once per deployment, so reserved "
    "concurrency would only hold capacity idle.",
    "CKV_AWS_116": "CDK deploy-time provider: CloudFormation invokes it synchronously and reports failures "
    "itself; a DLQ only receives failed asynchronous invocations.",
    "CKV_AWS_117": "CDK deploy-time provider: it calls the EC2 and S3 APIs while CloudFormation deploys and "
    "has no access to data in the VPC; running it in the isolated subnets adds nothing.",
}
_CFN_LINT_IGNORES = {
    "W3005": "CDK's generated provider declares DependsOn on its role as well as a GetAtt of it; "
    "redundant but harmless, and the template is CDK's.",
}


@jsii.implements(IAspect)
class AcceptCdkProviderFindings:
    """Writes the reasoned checkov and cfn-lint skips onto CDK's provider handlers."""

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, CfnResource) or node.cfn_resource_type != "AWS::Lambda::Function":
            return
        scope = node.node.scope
        if scope is None or scope.node.id not in KNOWN_PROVIDERS:
            return
        for check_id, reason in _CHECKOV_SKIPS.items():
            skip_checkov(node, check_id, reason)
        for rule_id, reason in _CFN_LINT_IGNORES.items():
            ignore_cfn_lint(node, rule_id, reason)
