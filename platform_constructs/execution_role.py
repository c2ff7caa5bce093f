"""IAM roles for SageMaker (and other services) whose permissions live in a customer-managed policy.

CDK's ``grant_*`` helpers write into a role's inline default policy, which HIPAA, NIST 800-53 and
PCI DSS flag (``IAMNoInlinePolicy``). Here every permission, granted or written, lands in one
customer-managed policy per role: grants go through :attr:`ServiceRole.grantee`, a principal that
stands for the role but adds statements to that policy.
"""

from __future__ import annotations

from collections.abc import Sequence

import jsii
from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from policy.acknowledge import acknowledge


@jsii.implements(iam.IPrincipal)
class _ManagedPolicyGrantee:
    """The role as a grant target, with every statement written to its managed policy."""

    def __init__(self, role: iam.Role, policy: iam.ManagedPolicy) -> None:
        self._role, self._policy = role, policy

    @property
    def grant_principal(self) -> iam.IPrincipal:
        return self

    @property
    def assume_role_action(self) -> str:
        return self._role.assume_role_action

    @property
    def policy_fragment(self) -> iam.PrincipalPolicyFragment:
        return self._role.policy_fragment

    @property
    def principal_account(self) -> str | None:
        return self._role.principal_account

    def add_to_principal_policy(self, statement: iam.PolicyStatement) -> iam.AddToPrincipalPolicyResult:
        self._policy.add_statements(statement)
        return iam.AddToPrincipalPolicyResult(statement_added=True, policy_dependable=self._policy)

    def add_to_policy(self, statement: iam.PolicyStatement) -> bool:
        return self.add_to_principal_policy(statement).statement_added


class ServiceRole(Construct):
    """A role one service assumes for one job type, with its permissions in a managed policy."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        assumed_by: iam.IPrincipal,
        description: str,
        managed_policies: Sequence[iam.IManagedPolicy] = (),
        role_name: str | None = None,
    ) -> None:
        super().__init__(scope, id_)
        # A fixed name only where another account or stack must name the role before it exists.
        self.role = iam.Role(self, "Role", assumed_by=assumed_by, description=description, role_name=role_name)
        self.policy = iam.ManagedPolicy(
            self, "Permissions", roles=[self.role], description=f"Permissions: {description}"
        )
        for policy in managed_policies:
            self.role.add_managed_policy(policy)
        self.grantee: iam.IPrincipal = _ManagedPolicyGrantee(self.role, self.policy)
        self._acknowledged: set[str] = set()

    @property
    def role_arn(self) -> str:
        return self.role.role_arn

    def allow(
        self,
        actions: Sequence[str],
        resources: Sequence[str],
        conditions: dict[str, object] | None = None,
        *,
        wildcard_reason: str | None = None,
    ) -> None:
        """Add one Allow statement. A wildcard resource needs ``wildcard_reason``: it acknowledges
        exactly that resource's AwsSolutions-IAM5 finding on this role's policy."""
        self.policy.add_statements(
            iam.PolicyStatement(actions=list(actions), resources=list(resources), conditions=conditions)
        )
        for resource in resources:
            literal = literal_arn(self, resource)
            if literal is None or "*" not in literal:
                continue
            if not wildcard_reason:
                raise ValueError(f"{self.node.path}: {literal} is a wildcard; say why with wildcard_reason")
            if literal not in self._acknowledged:
                self._acknowledged.add(literal)
                acknowledge(self.policy, f"AwsSolutions-IAM5[Resource::{literal}]", wildcard_reason)

    def read_object(self, bucket: s3.IBucket, key: str) -> None:
        """Read one object (no listing); decrypt with the bucket's key."""
        self.allow(["s3:GetObject"], [bucket.arn_for_objects(key)])
        if bucket.encryption_key:
            self.use_key(bucket.encryption_key, decrypt=True)

    def read_objects(self, bucket: s3.IBucket, prefix: str, *, reason: str) -> None:
        """List the bucket under ``prefix`` and read those objects; decrypt with the bucket's key."""
        self.allow(["s3:GetObject"], [bucket.arn_for_objects(f"{prefix}*")], wildcard_reason=reason)
        self.allow(["s3:ListBucket"], [bucket.bucket_arn], {"StringLike": {"s3:prefix": [f"{prefix}*"]}})
        if bucket.encryption_key:
            self.use_key(bucket.encryption_key, decrypt=True)

    def write_objects(self, bucket: s3.IBucket, prefix: str, *, reason: str) -> None:
        """Write objects under ``prefix`` (multipart included); encrypt with the bucket's key."""
        self.allow(
            ["s3:PutObject", "s3:AbortMultipartUpload"], [bucket.arn_for_objects(f"{prefix}*")], wildcard_reason=reason
        )
        if bucket.encryption_key:
            self.use_key(bucket.encryption_key, encrypt=True)

    def use_key(self, key: kms.IKey, *, decrypt: bool = False, encrypt: bool = False) -> None:
        actions = ["kms:DescribeKey"]
        if decrypt:
            actions.append("kms:Decrypt")
        if encrypt:
            actions += ["kms:GenerateDataKey", "kms:Encrypt"]
        self.allow(actions, [key.key_arn])
        # SageMaker attaches encrypted volumes through grants it makes with the execution role.
        self.allow(["kms:CreateGrant"], [key.key_arn], {"Bool": {"kms:GrantIsForAWSResource": "true"}})


def literal_arn(scope: Construct, value: str) -> str | None:
    """``value`` as a plain string once resolved in ``scope``'s stack, or None if it stays a token."""
    resolved = Stack.of(scope).resolve(value)
    return resolved if isinstance(resolved, str) else None
