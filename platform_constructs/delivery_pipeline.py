"""The delivery pipeline: CDK Pipelines in the tooling account, deploying the environments in order.

Source (a CodeConnections connection to the repository) -> Build (the project's own gates, ``make
test``, then ``cdk synth``) -> UpdatePipeline (self-mutation) -> Assets (the Lambda code, the training
code and the serving image, published to every environment) -> one stage per environment in config
order, each deploying its stacks with that environment's CDK bootstrap roles and then running
``scripts/smoke_test.py`` with the environment's read-only smoke-test role; a manual approval comes
before the environments config names (prod by default).

Artifacts are encrypted with a customer-managed key whose policy CDK Pipelines extends to each target
account's deploy role (``cross_account_keys``), in a bucket with the platform's controls.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import CfnResource, Duration, Stack, Stage, pipelines
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from constructs import Construct, IConstruct

from config import EnvironmentConfig, PromotionConfig
from platform_constructs.encryption_key import EncryptionKey
from platform_constructs.images import xgboost_image
from platform_constructs.model_deployer import smoke_runner_role_name, smoke_test_role_name
from platform_constructs.secure_bucket import SecureBucket, make_bucket_name
from policy.acknowledge import acknowledge, ignore_cfn_lint, skip_checkov
from policy.packs import NAG_PACKS

BUILD_IMAGE = codebuild.LinuxBuildImage.STANDARD_7_0
RUNTIMES = {"python": "3.11", "nodejs": "20"}
# The pinned CDK CLI of package.json, for self-mutation and asset publishing too.
CLI_VERSION = "2.1148.1"
BOTO3_FROM_REQUIREMENTS = "python -m pip install --quiet \"$(grep -E '^boto3==' requirements-dev.txt)\""


@dataclass(frozen=True)
class GeneratedFinding:
    """One kind of finding on resources CDK Pipelines generates, accepted for one reason."""

    rule: re.Pattern[str]
    path: re.Pattern[str]  # construct path below the pipeline
    reason: str


_GRANT = (
    "CDK Pipelines grants each role of the pipeline what its action needs on the pipeline's own artifact "
    "bucket and key (CDK's grantRead/grantReadWrite action sets); nothing outside them."
)
GENERATED_FINDINGS = (
    GeneratedFinding(
        re.compile(r"^(HIPAA\.Security|NIST\.800\.53\.R5|PCI\.DSS\.321)-IAMNoInlinePolicy$"),
        re.compile(r"/DefaultPolicy/Resource$"),
        "CDK Pipelines writes the permissions of the roles it creates for the pipeline, its actions and "
        "CodeBuild steps into each role's default policy as it wires the actions; the roles exist only "
        "for the delivery pipeline.",
    ),
    GeneratedFinding(
        re.compile(r"^AwsSolutions-IAM5\[Action::(s3|kms):[A-Za-z]+\*\]$"),
        re.compile(r"/DefaultPolicy/Resource$"),
        _GRANT,
    ),
    GeneratedFinding(
        re.compile(r"^AwsSolutions-IAM5\[Resource::<[A-Za-z]*ArtifactsBucket[0-9A-F]{8}\.Arn>/\*\]$"),
        re.compile(r"/DefaultPolicy/Resource$"),
        _GRANT,
    ),
    GeneratedFinding(
        re.compile(
            r"^AwsSolutions-IAM5\[Resource::(\*|arn:aws:codebuild:[a-z0-9-]+:\d{12}:report-group/\*|"
            r"arn:aws:logs:[a-z0-9-]+:\d{12}:log-group:/aws/codebuild/\*)\]$"
        ),
        re.compile(r"/Pipeline/Assets/(File|Docker)Role/DefaultPolicy/Resource$"),
        "One role serves all asset-publishing CodeBuild projects CDK Pipelines creates (one per asset), so "
        "its log and report statements cover CodeBuild's prefixes of this account; it starts those builds "
        "and logs in to ECR (GetAuthorizationToken has no resource), and assumes only CDK's publishing roles.",
    ),
    GeneratedFinding(
        re.compile(r"^AwsSolutions-IAM5\[Resource::arn:aws:(logs|codebuild):[a-z0-9-]+:\d{12}:.*<.+>.*\]$"),
        re.compile(r"/DefaultPolicy/Resource$"),
        "A CodeBuild project writes its own log streams and test reports, named after the project; CDK "
        "Pipelines scopes the statement to that project.",
    ),
    GeneratedFinding(
        re.compile(r"^AwsSolutions-IAM5\[Resource::(\*|arn:\*:iam::\d{12}:role/\*)\]$"),
        re.compile(r"/UpdatePipeline/SelfMutation/Role/DefaultPolicy/Resource$"),
        "Self-mutation deploys the pipeline's own stack with CDK's bootstrap roles (assumed by name pattern) "
        "and reads their stacks' outputs; this is CDK Pipelines' documented design.",
    ),
    GeneratedFinding(
        re.compile(r"^(HIPAA\.Security|PCI\.DSS\.321)-CodeBuildProjectSourceRepoUrl$"),
        re.compile(r"/Resource$"),
        "The CodeBuild projects take their source from the pipeline's artifacts (source type CODEPIPELINE), "
        "never from a repository URL, so no credentials can be in one.",
    ),
)


def _camel(name: str) -> str:
    return name[:1].upper() + name[1:]


class DeliveryPipeline(Construct):
    """A CDK Pipelines ``CodePipeline`` deploying ``environments`` (name, stage) in order."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        project: str,
        promotion: PromotionConfig,
        environments: Sequence[tuple[EnvironmentConfig, Stage]],
    ) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        self.source = pipelines.CodePipelineSource.connection(
            promotion.repository, promotion.branch, connection_arn=promotion.connection_arn, trigger_on_push=True
        )
        self.key = EncryptionKey(
            self,
            "ArtifactsKey",
            alias=f"alias/{project}/delivery/artifacts",
            description="Delivery pipeline: build and deployment artifacts",
            retain=True,
        )
        self.access_logs = SecureBucket(
            self,
            "AccessLogsBucket",
            bucket_name=make_bucket_name(project, "delivery", "access-logs", stack.account, stack.region),
            encryption_key=None,
            access_logs_bucket=None,
            retain=True,
            noncurrent_version_expiry=Duration.days(90),
            object_expiry=Duration.days(365),
        )
        self.artifacts = SecureBucket(
            self,
            "ArtifactsBucket",
            bucket_name=make_bucket_name(project, "delivery", "artifacts", stack.account, stack.region),
            encryption_key=self.key,
            access_logs_bucket=self.access_logs,
            retain=True,
            noncurrent_version_expiry=Duration.days(30),
            object_expiry=Duration.days(90),
        )
        build_spec = codebuild.BuildSpec.from_object({"phases": {"install": {"runtime-versions": RUNTIMES}}})
        self.pipeline = pipelines.CodePipeline(
            self,
            "Pipeline",
            pipeline_name=f"{project}-delivery",
            synth=pipelines.CodeBuildStep(
                "Synth",
                input=self.source,
                # The README's test command (every gate), then the synth the deploy stages use.
                commands=["make test", "make synth"],
                primary_output_directory="cdk.out",
                timeout=Duration.minutes(60),
            ),
            artifact_bucket=self.artifacts,
            cross_account_keys=True,
            enable_key_rotation=True,
            self_mutation=True,
            docker_enabled_for_synth=False,  # synth stages the image's build context; publishing builds it
            docker_credentials=[self._base_image_credential([env for env, _ in environments])],
            cli_version=CLI_VERSION,
            code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(
                    build_image=BUILD_IMAGE, compute_type=codebuild.ComputeType.MEDIUM
                ),
                partial_build_spec=build_spec,
            ),
        )
        self.smoke_runner_roles: dict[str, iam.Role] = {}
        for env, stage in environments:
            if env.name in promotion.manual_approval_before:
                self.pipeline.add_wave(
                    f"Approve{_camel(env.name)}",
                    pre=[
                        pipelines.ManualApprovalStep(
                            f"Approve{_camel(env.name)}",
                            comment=f"Deploy to {env.name} ({env.account}, {env.region})? The previous "
                            "environments deployed and passed their smoke tests.",
                        )
                    ],
                )
            self.pipeline.add_stage(stage, post=[self._smoke_test(project, env, promotion)])
        self.pipeline.build_pipeline()
        self._accept_generated_findings()
        self._accept_generated_scanner_findings()

    def _base_image_credential(self, environments: Sequence[EnvironmentConfig]) -> pipelines.DockerCredential:
        """Asset publishing builds the serving image FROM AWS's XGBoost image of each region: log Docker in
        to those registries (pull only)."""
        repositories: list[ecr.IRepository] = []
        for region in sorted({env.region for env in environments}):
            registry, _, rest = xgboost_image(region, "inference").partition("/")
            name = rest.split(":", 1)[0]
            account = registry.split(".", 1)[0]
            repositories.append(
                ecr.Repository.from_repository_attributes(
                    self,
                    f"BaseImage{_camel(region.replace('-', ''))}",
                    repository_arn=f"arn:{Stack.of(self).partition}:ecr:{region}:{account}:repository/{name}",
                    repository_name=name,
                )
            )
        return pipelines.DockerCredential.ecr(
            repositories,
            usages=[pipelines.DockerCredentialUsage.ASSET_PUBLISHING],
        )

    def _smoke_test(self, project: str, env: EnvironmentConfig, promotion: PromotionConfig) -> pipelines.Step:
        target_role = (
            f"arn:{Stack.of(self).partition}:iam::{env.account}:role/{smoke_test_role_name(project, env.name)}"
        )
        role = iam.Role(
            self,
            f"SmokeTest{_camel(env.name)}Role",
            role_name=smoke_runner_role_name(project, env.name),
            assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
            description=f"Delivery pipeline: smoke test of {env.name}, through {env.name}'s smoke-test role",
        )
        self.smoke_runner_roles[env.name] = role
        return pipelines.CodeBuildStep(
            "SmokeTest",
            input=self.source,
            install_commands=[BOTO3_FROM_REQUIREMENTS],
            commands=[f"python -m scripts.smoke_test --env {env.name} --role-arn {target_role}"],
            role=role,
            role_policy_statements=[iam.PolicyStatement(actions=["sts:AssumeRole"], resources=[target_role])],
            timeout=Duration.minutes(30),
        )

    def _accept_generated_findings(self) -> None:
        """Accept, on the exact resource, each finding the policy packs raise on resources CDK Pipelines
        generated, when it is of a kind listed in :data:`GENERATED_FINDINGS`; anything else still fails
        synth."""
        prefix = self.node.path + "/"
        constructs = {c.node.path: c for c in self.node.find_all()}
        seen: set[tuple[str, str]] = set()
        for pack in NAG_PACKS.values():
            for violation in pack().validate_scope(self).violations:
                for resource in violation.violating_resources:
                    path = resource.construct_path or ""
                    if not path.startswith(prefix) or (violation.rule_name, path) in seen:
                        continue
                    kind = next(
                        (k for k in GENERATED_FINDINGS if k.rule.match(violation.rule_name) and k.path.search(path)),
                        None,
                    )
                    if kind is None:
                        continue
                    seen.add((violation.rule_name, path))
                    owner: IConstruct = (
                        constructs[path.removesuffix("/Resource")] if path.endswith("/Resource") else constructs[path]
                    )
                    acknowledge(owner, violation.rule_name, kind.reason)

    def _accept_generated_scanner_findings(self) -> None:
        """The scanners' findings on what CDK Pipelines generates, each on its one resource."""
        pipeline = typing.cast(CfnResource, self.pipeline.pipeline.node.default_child)
        ignore_cfn_lint(
            pipeline,
            "E3703",
            "CDK Pipelines builds each deploy action's role ARNs with Fn::Join; a style preference for Fn::Sub, "
            "the resolved ARNs are the same.",
        )
        ignore_cfn_lint(
            pipeline,
            "W3005",
            "CDK's Pipeline declares DependsOn on its role as well as a GetAtt of it; redundant but harmless.",
        )
        for construct in self.node.find_all():
            path = construct.node.path
            if isinstance(construct, CfnResource) and re.search(
                r"/Assets/(File|Docker)Role/DefaultPolicy/Resource$", path
            ):
                skip_checkov(
                    construct,
                    "CKV_AWS_111",
                    "CDK Pipelines' asset-publishing role starts the asset CodeBuild builds it owns and logs in to "
                    "ECR; CodeBuild's BatchGetBuilds/StartBuild here and GetAuthorizationToken have no narrower "
                    "resource CDK can name before the projects exist.",
                )
