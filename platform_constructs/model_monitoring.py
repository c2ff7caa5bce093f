"""Model monitoring of one endpoint: one of two backends behind one switch, and what the results do.

``settings.backend`` picks who computes the monitoring metrics:

- ``"platform"`` (default): :class:`MonitoringPipeline`, the platform's own scheduled job (this
  repository's ``monitoring_code/``), usable in every account;
- ``"model_monitor"``: :class:`ModelMonitorSchedules`, native Model Monitor and Clarify schedules, for
  accounts that still have them (closed to new customers since 2026-07-30), republished under the
  same metric names.

Everything after the metrics is the same for both and exists from the first deploy, with or without
a model deployed: the alarms (missing data is not breaching), their routes, the dashboard. Routes
(:data:`ALARMS`, README "What each monitoring alarm means and does"):

- data integrity (the data is broken upstream): notify only, and it vetoes retraining;
- data drift, model quality, attribution drift of the champion (categories in ``retrain_on``):
  notify and start the training pipeline, at most once per cool-down (``functions/retrain_on_drift.py``);
- bias drift: notify (a person decides; retraining on the same data tends to reproduce the bias);
- any alarm of a challenger or shadow variant, and challenger better/worse: notify (a candidate's
  problems are no reason to retrain the champion, and promotion stays a human approval).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from config import MonitoringSettings, MonitoringThresholds
from platform_constructs.alert_topic import AlertTopic
from platform_constructs.model_monitor_schedules import ModelMonitorSchedules
from platform_constructs.monitoring_pipeline import MonitoringPipeline
from platform_constructs.platform_function import PlatformFunction

NOTIFY = "notify"
NOTIFY_AND_RETRAIN = "notify + retrain"


@dataclass(frozen=True)
class AlarmKind:
    """One kind of monitoring alarm: the metric it watches and what it means."""

    name: str  # part of the alarm name, e.g. "data-drift"
    metric: str  # monitoring_code/CONTRACT.md metric name
    monitoring_type: str
    category: str | None  # the retrain_on category, if the alarm can retrain
    meaning: str
    threshold: float = 1
    challenger_only: bool = False


ALARMS: tuple[AlarmKind, ...] = (
    AlarmKind(
        "data-integrity",
        "data_integrity_violations",
        "DataQuality",
        None,
        "Captured requests are broken upstream: missing, mistyped or out-of-range values, malformed records. "
        "Fix the data; never retrain on it.",
    ),
    AlarmKind(
        "data-drift",
        "data_drift_violations",
        "DataQuality",
        "data_drift",
        "Feature distributions moved away from the training baseline (KS or L-infinity distance above the "
        "threshold and significant).",
    ),
    AlarmKind(
        "model-quality",
        "model_quality_violations",
        "ModelQuality",
        "model_quality",
        "On labelled traffic, AUC, accuracy, precision, recall, F1 or log loss fell below the version's own "
        "registered evaluation by more than allowed.",
    ),
    AlarmKind(
        "bias-drift",
        "bias_drift_violations",
        "ModelBias",
        "bias_drift",
        "Outcome gaps between segments of a protected attribute changed from the baseline (DPPL, DI, recall "
        "or false-positive-rate gap). A person decides what to do.",
    ),
    AlarmKind(
        "attribution-drift",
        "attribution_drift_violations",
        "ModelExplainability",
        "attribution_drift",
        "The model relies on features in a different order than at training (SHAP ranking nDCG below the threshold).",
    ),
    AlarmKind(
        "challenger-better",
        "challenger_verdict",
        "Comparison",
        None,
        "The challenger is significantly better than the champion on labelled traffic: consider approving "
        "its version (promotion stays a human decision).",
        challenger_only=True,
    ),
    AlarmKind(
        "challenger-worse",
        "challenger_verdict",
        "Comparison",
        None,
        "The challenger is significantly worse than the champion: consider taking its traffic away.",
        threshold=-1,
        challenger_only=True,
    ),
)


@dataclass(frozen=True)
class MonitoringAlarm:
    variant: str
    kind: AlarmKind
    route: str
    alarm: cloudwatch.Alarm


def route_of(kind: AlarmKind, *, champion: bool, retrain_on: Sequence[str]) -> str:
    """What an alarm does: notify, or notify and start the training pipeline."""
    if champion and kind.category is not None and kind.category in retrain_on:
        return NOTIFY_AND_RETRAIN
    return NOTIFY


class ModelMonitoring(Construct):
    """The chosen backend, the monitoring alarms with their routes, the retraining function and rule,
    and the monitoring dashboard of one endpoint."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        endpoint_name: str,
        pipeline_name: str,
        variants: Sequence[str],
        settings: MonitoringSettings,
        training_pipeline_name: str | None,
        capture_bucket: s3.IBucket,
        monitoring_bucket: s3.IBucket,
        models_bucket: s3.IBucket,
        data_key: kms.IKey,
        logs_key: kms.IKey,
        model_key: kms.IKey,
        model_package_group_name: str,
        ground_truth_uri: str,
        vpc: ec2.IVpc,
        subnets: ec2.SelectedSubnets,
        job_security_group: ec2.ISecurityGroup,
        function_security_group: ec2.ISecurityGroup,
        alerts: AlertTopic,
        log_retention_days: int,
        retain: bool,
        allowed_instance_types: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, id_)
        if not variants:
            raise ValueError("ModelMonitoring needs the endpoint's variants (the first is the champion)")
        self.endpoint_name = endpoint_name
        self.settings = settings
        self.variants = list(variants)
        self.pipeline: MonitoringPipeline | None = None
        self.model_monitor: ModelMonitorSchedules | None = None
        if settings.backend == "platform":
            self.pipeline = MonitoringPipeline(
                self,
                "Pipeline",
                pipeline_name=pipeline_name,
                endpoint_name=endpoint_name,
                variants=variants,
                settings=settings,
                capture_bucket=capture_bucket,
                monitoring_bucket=monitoring_bucket,
                models_bucket=models_bucket,
                data_key=data_key,
                logs_key=logs_key,
                model_key=model_key,
                model_package_group_name=model_package_group_name,
                ground_truth_uri=ground_truth_uri,
                job_security_group=job_security_group,
                alarm_topic=alerts.topic,
                vpc=vpc,
                subnets=subnets,
                function_security_group=function_security_group,
                log_retention_days=log_retention_days,
                retain=retain,
                allowed_instance_types=allowed_instance_types,
            )
        else:
            self.model_monitor = ModelMonitorSchedules(
                self,
                "ModelMonitor",
                endpoint_name=endpoint_name,
                variant=variants[0],
                settings=settings,
                capture_bucket=capture_bucket,
                monitoring_bucket=monitoring_bucket,
                data_key=data_key,
                logs_key=logs_key,
                ground_truth_uri=ground_truth_uri,
                job_security_group=job_security_group,
                alerts=alerts,
                vpc=vpc,
                subnets=subnets,
                function_security_group=function_security_group,
                log_retention_days=log_retention_days,
                retain=retain,
            )

        # An environment that does not train (prod as shipped: it serves what staging promotes) has no
        # training pipeline to start: its monitoring alarms notify, and retraining happens where models
        # are trained, reaching this environment through promotion.
        self.trains = training_pipeline_name is not None
        self.alarms = self._alarms(alerts)
        self.retrainer: PlatformFunction | None = None
        self.retrain_rule: events.CfnRule | None = None
        if training_pipeline_name is not None:
            self.retrainer = PlatformFunction(
                self,
                "RetrainOnDrift",
                handler="retrain_on_drift.handler",
                description=f"Starts {training_pipeline_name} when monitoring of {endpoint_name} finds drift "
                "(never on broken data, at most once per cool-down)",
                key=logs_key,
                alarm_topic=alerts.topic,
                environment={
                    "TRAINING_PIPELINE_NAME": training_pipeline_name,
                    "METRIC_NAMESPACE": settings.metric_namespace,
                    "ENDPOINT_NAME": endpoint_name,
                    "VARIANTS": ",".join(variants),
                    "COOLDOWN_HOURS": str(settings.retrain_cooldown_hours),
                    "PERIOD_SECONDS": str(settings.schedule_seconds),
                    "LOOKBACK_PERIODS": str(settings.alarm_after_runs),
                },
                vpc=vpc,
                subnets=subnets,
                security_group=function_security_group,
                log_retention_days=log_retention_days,
                retain=retain,
            )
            stack = Stack.of(self)
            training_arn = stack.format_arn(
                service="sagemaker", resource="pipeline", resource_name=training_pipeline_name
            )
            self.retrainer.allow(
                ["sagemaker:StartPipelineExecution", "sagemaker:ListPipelineExecutions"], [training_arn]
            )
            self.retrainer.allow(
                ["cloudwatch:GetMetricData"],
                ["*"],
                wildcard_reason="GetMetricData has no resource-level permissions; the function reads the data-integrity "
                "counts of the endpoint's variants before it retrains (read-only).",
            )
            retrain = [a.alarm for a in self.alarms if a.route == NOTIFY_AND_RETRAIN]
            if retrain:
                self.retrain_rule = events.CfnRule(
                    self,
                    "RetrainRule",
                    description=f"Retrain when a drift or model-quality alarm of {endpoint_name} goes into ALARM",
                    state="ENABLED",
                    event_pattern={
                        "source": ["aws.cloudwatch"],
                        "detail-type": ["CloudWatch Alarm State Change"],
                        "resources": [a.alarm_arn for a in retrain],
                        "detail": {"state": {"value": ["ALARM"]}},
                    },
                    targets=[
                        events.CfnRule.TargetProperty(
                            id="RetrainOnDrift",
                            arn=self.retrainer.function_arn,
                            retry_policy=events.CfnRule.RetryPolicyProperty(
                                maximum_event_age_in_seconds=3600, maximum_retry_attempts=10
                            ),
                        )
                    ],
                )
                lambda_.CfnPermission(
                    self,
                    "RetrainRulePermission",
                    action="lambda:InvokeFunction",
                    function_name=self.retrainer.function_arn,
                    principal="events.amazonaws.com",
                    source_arn=self.retrain_rule.attr_arn,
                )
        self.dashboard = self._dashboard()

    # --- alarms -------------------------------------------------------------------------------------

    def metric(self, name: str, variant: str, monitoring_type: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=self.settings.metric_namespace,
            metric_name=name,
            dimensions_map={"Endpoint": self.endpoint_name, "Variant": variant, "MonitoringType": monitoring_type},
            statistic="Maximum",
            period=Duration.seconds(self.settings.schedule_seconds),
        )

    def _alarms(self, alerts: AlertTopic) -> list[MonitoringAlarm]:
        s = self.settings
        notify = cw_actions.SnsAction(alerts.topic)
        found = []
        for index, variant in enumerate(self.variants):
            champion = index == 0
            for kind in ALARMS:
                if kind.challenger_only and champion:
                    continue
                retrain_on = s.thresholds.retrain_on if self.trains else ()
                route = route_of(kind, champion=champion, retrain_on=retrain_on)
                # Alarms that act on a trend wait for alarm_after_runs runs; integrity and challenger
                # verdicts are already tested for significance and are reported at once.
                runs = s.alarm_after_runs if kind.category is not None else 1
                alarm = cloudwatch.Alarm(
                    self,
                    f"{variant}{''.join(p.title() for p in kind.name.split('-'))}Alarm",
                    alarm_name=f"{self.endpoint_name}-monitoring-{variant}-{kind.name}",
                    alarm_description=f"{variant} of {self.endpoint_name}: {kind.meaning} Action: {route}.",
                    metric=self.metric(kind.metric, variant, kind.monitoring_type),
                    threshold=kind.threshold,
                    evaluation_periods=runs,
                    datapoints_to_alarm=runs,
                    comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD
                    if kind.threshold < 0
                    else cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                    treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                )
                alarm.add_alarm_action(notify)
                found.append(MonitoringAlarm(variant, kind, route, alarm))
        return found

    # --- dashboard ----------------------------------------------------------------------------------

    def _dashboard(self) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{self.endpoint_name}-monitoring",
            default_interval=Duration.days(7),
        )
        backend = "the platform's monitoring pipeline" if self.settings.backend == "platform" else "Model Monitor"
        dashboard.add_widgets(
            cloudwatch.TextWidget(
                markdown=f"# Model monitoring of {self.endpoint_name}\nMetrics by {backend}, every "
                f"{self.settings.schedule_hours} h, namespace `{self.settings.metric_namespace}`. What each alarm "
                "means and does: README, *Monitoring in AWS*.",
                width=24,
                height=2,
            ),
            cloudwatch.AlarmStatusWidget(
                title="Monitoring alarms", alarms=[a.alarm for a in self.alarms], width=24, height=4
            ),
        )
        counts = [k for k in ALARMS if not k.challenger_only]
        for index, variant in enumerate(self.variants):
            dashboard.add_widgets(
                cloudwatch.GraphWidget(
                    title=f"{variant}: violations per run",
                    left=[self.metric(k.metric, variant, k.monitoring_type) for k in counts],
                    width=12,
                ),
                cloudwatch.GraphWidget(
                    title=f"{variant}: records analyzed and labelled",
                    left=[
                        self.metric("records_analyzed", variant, "DataQuality"),
                        self.metric("labelled_records", variant, "ModelQuality"),
                    ],
                    right=[self.metric("auc", variant, "ModelQuality")],
                    width=12,
                ),
            )
            if index:
                dashboard.add_widgets(
                    cloudwatch.GraphWidget(
                        title=f"{variant} vs {self.variants[0]}: AUC difference and verdict",
                        left=[self.metric("challenger_auc_difference", variant, "Comparison")],
                        right=[self.metric("challenger_verdict", variant, "Comparison")],
                        width=24,
                    )
                )
        return dashboard


def alarm_routing_table(retrain_on: Sequence[str] = MonitoringThresholds().retrain_on) -> str:
    """The README's table of monitoring alarms, what each means and does (a test keeps them equal)."""
    rows = [
        "| Alarm `<endpoint>-monitoring-<Variant>-…` | Metric and threshold | Meaning | Champion | Challenger, shadow |",
        "|---|---|---|---|---|",
    ]
    for kind in ALARMS:
        comparison = "≤ -1" if kind.threshold < 0 else "≥ 1"
        champion = "—" if kind.challenger_only else route_of(kind, champion=True, retrain_on=retrain_on)
        others = route_of(kind, champion=False, retrain_on=retrain_on)
        rows.append(f"| `{kind.name}` | `{kind.metric}` {comparison} | {kind.meaning} | {champion} | {others} |")
    return "\n".join(rows) + "\n"
