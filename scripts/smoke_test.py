"""Smoke test of one deployed environment: what the delivery pipeline runs after each deployment.

    python -m scripts.smoke_test --env staging --role-arn arn:aws:iam::333333333333:role/churn-staging-smoke-test

Checks, each printed as PASS or FAIL with what was found:

1. the environment's SageMaker pipelines exist and are Active (training where the environment
   trains, feature ingestion, batch scoring);
2. the feature group is active: created (``FeatureGroupStatus`` Created) with its offline store Active;
3. where a champion model is approved (its SSM parameter is not ``none``), the endpoint is InService
   (waiting while it is Creating or Updating), and each production variant
   - answers sample customers built from the feature schema with one churn probability in [0, 1]
     per row, within the latency budget (after one warm-up request), and
   - answers a malformed row with HTTP 400.

Exit status: 0 when every check passes, 1 when one fails (each failure says what was expected and what
came back), 2 for a usage or configuration error. Only boto3 is needed; with ``--role-arn`` the
checks run with that role (the environment's read-only smoke-test role, which trusts the delivery
pipeline's smoke-test step).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config import ConfigError, EnvironmentConfig, load_config
from config.settings import DEFAULT_CONFIG_PATH

ROOT = Path(__file__).resolve().parent.parent
TRAINING_CODE = ROOT / "training_code"
NO_MODEL = "none"
TRANSITIONAL = ("Creating", "Updating", "SystemUpdating", "RollingBack", "UpdateRollbackFailed")
MALFORMED_ROW = "not-a-number,1,2\n"
POLL_SECONDS = 15.0


@dataclass(frozen=True)
class Targets:
    """The names of what one environment deploys (tests check them against the synthesized templates)."""

    environment: str
    endpoint: str
    pipelines: tuple[str, ...]
    feature_group: str
    parameters: dict[str, str]  # variant -> SSM parameter holding its model package
    inference_type: str

    @property
    def champion(self) -> str:
        return next(iter(self.parameters))


def targets(project: str, env: EnvironmentConfig) -> Targets:
    prefix = f"{project}-{env.name}"
    pipelines = ([f"{prefix}-training"] if env.training.enabled else []) + [
        f"{prefix}-ingest-features",
        f"{prefix}-batch-scoring",
    ]
    variants = [v.name for v in env.serving.variants] + (["Shadow"] if env.serving.shadow_variant else [])
    return Targets(
        environment=env.name,
        endpoint=prefix,
        pipelines=tuple(pipelines),
        feature_group=f"{prefix}-customers-v{env.feature_store.group_version}",
        parameters={v: f"{project}-{env.name}-{v}-model-package" for v in variants},
        inference_type=env.serving.inference_type,
    )


@dataclass(frozen=True)
class Result:
    check: str
    passed: bool
    message: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.check}: {self.message}"


def sample_rows(count: int) -> list[list[float]]:
    """``count`` customers spread across each feature's range in the schema, deterministic."""
    sys.path.insert(0, str(TRAINING_CODE))
    try:
        from feature_schema import load_schema
    finally:
        sys.path.remove(str(TRAINING_CODE))
    schema = load_schema()
    rows = []
    for index in range(count):
        fraction = (index + 1) / (count + 1)
        row = []
        for name in schema.model_features:
            column = schema.column(name)
            if column.allowed:
                value = float(column.allowed[index % len(column.allowed)])
            else:
                low = column.minimum if column.minimum is not None else 0.0
                high = column.maximum if column.maximum is not None else low + 100.0
                # Keep to the lower part of wide ranges, where real customers are.
                value = low + (min(high - low, 100.0 * (1 + abs(low))) * fraction)
                if column.type == "integral":
                    value = float(round(value))
            row.append(value)
        rows.append(row)
    return rows


def to_csv(rows: Sequence[Sequence[float]]) -> str:
    return "".join(",".join(f"{v:g}" for v in row) + "\n" for row in rows)


class SmokeTest:
    def __init__(
        self,
        targets: Targets,
        *,
        sagemaker: Any,
        runtime: Any,
        ssm: Any,
        latency_budget_ms: float,
        rows: int,
        wait_seconds: float = 900.0,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.targets = targets
        self.sagemaker, self.runtime, self.ssm = sagemaker, runtime, ssm
        self.latency_budget_ms = latency_budget_ms
        self.rows = rows
        self.wait_seconds = wait_seconds
        self.clock, self.sleep = clock, sleep

    def run(self) -> list[Result]:
        return [self.check_pipelines(), self.check_feature_group(), *self.check_endpoint()]

    # --- checks -------------------------------------------------------------------------------------

    def check_pipelines(self) -> Result:
        problems, found = [], []
        for name in self.targets.pipelines:
            try:
                status = self.sagemaker.describe_pipeline(PipelineName=name).get("PipelineStatus")
            except _client_error() as error:
                problems.append(f"{name} is missing ({_code(error)})")
                continue
            if status != "Active":
                problems.append(f"{name} is {status}, not Active")
            else:
                found.append(name)
        if problems:
            return Result("pipelines", False, "; ".join(problems))
        return Result("pipelines", True, f"{', '.join(found)} exist and are Active")

    def check_feature_group(self) -> Result:
        name = self.targets.feature_group
        try:
            group = self.sagemaker.describe_feature_group(FeatureGroupName=name)
        except _client_error() as error:
            return Result("feature group", False, f"{name} is missing ({_code(error)})")
        status = group.get("FeatureGroupStatus")
        offline = (group.get("OfflineStoreStatus") or {}).get("Status")
        if status != "Created":
            reason = f": {group['FailureReason']}" if group.get("FailureReason") else ""
            return Result("feature group", False, f"{name} is {status}, not Created{reason}")
        if group.get("OfflineStoreConfig") and offline != "Active":
            return Result("feature group", False, f"{name}'s offline store is {offline}, not Active")
        return Result("feature group", True, f"{name} is Created, offline store {offline or 'none'}")

    def check_endpoint(self) -> list[Result]:
        targets = self.targets
        champion = self.ssm.get_parameter(Name=targets.parameters[targets.champion])["Parameter"]["Value"]
        if champion == NO_MODEL:
            return [Result("endpoint", True, f"no {targets.champion} model approved yet: no endpoint to test")]
        endpoint = self._wait_for_endpoint()
        status = endpoint.get("EndpointStatus") if endpoint else None
        if status != "InService":
            reason = f": {endpoint['FailureReason']}" if endpoint and endpoint.get("FailureReason") else ""
            state = f"is {status}" if endpoint else "does not exist"
            message = f"{targets.endpoint} {state} although {champion} is approved for {targets.champion}{reason}"
            return [Result("endpoint", False, message)]
        results = [Result("endpoint", True, f"{targets.endpoint} is InService")]
        if targets.inference_type == "async":
            return [
                *results,
                Result("invocations", True, "asynchronous endpoint: answers arrive in S3, not checked here"),
            ]
        for variant in [v["VariantName"] for v in (endpoint or {}).get("ProductionVariants", [])]:
            results.append(self.check_answers(variant))
            results.append(self.check_malformed(variant))
        return results

    def check_answers(self, variant: str) -> Result:
        check = f"{variant} answers"
        body = to_csv(sample_rows(self.rows))
        try:
            self._invoke(variant, body)  # warm-up: serverless and fresh instances load the model first
            started = self.clock()
            answer = self._invoke(variant, body)
            elapsed_ms = (self.clock() - started) * 1000.0
        except _client_error() as error:
            return Result(check, False, f"{self.targets.endpoint} failed sample rows: {_describe(error)}")
        lines = [line for line in answer.decode("utf-8", "replace").splitlines() if line.strip()]
        if len(lines) != self.rows:
            return Result(check, False, f"{len(lines)} answers for {self.rows} rows: {answer[:200]!r}")
        for number, line in enumerate(lines, start=1):
            try:
                probability = float(line)
            except ValueError:
                probability = float("nan")
            if not 0.0 <= probability <= 1.0:
                return Result(check, False, f"row {number} answered {line[:60]!r}: not a probability in [0, 1]")
        if elapsed_ms > self.latency_budget_ms:
            return Result(
                check,
                False,
                f"answered {self.rows} rows in {elapsed_ms:.0f} ms, above the {self.latency_budget_ms:.0f} ms budget",
            )
        return Result(check, True, f"{self.rows} probabilities in [0, 1] in {elapsed_ms:.0f} ms")

    def check_malformed(self, variant: str) -> Result:
        check = f"{variant} refuses a malformed row"
        try:
            self._invoke(variant, MALFORMED_ROW)
        except _client_error() as error:
            status = error.response.get("OriginalStatusCode")
            if _code(error) == "ModelError" and status == 400:
                return Result(check, True, "HTTP 400")
            return Result(check, False, f"expected HTTP 400, got {_describe(error)}")
        return Result(check, False, f"expected HTTP 400 for {MALFORMED_ROW.strip()!r}, but it was answered")

    # --- helpers ------------------------------------------------------------------------------------

    def _invoke(self, variant: str, body: str) -> bytes:
        response = self.runtime.invoke_endpoint(
            EndpointName=self.targets.endpoint,
            TargetVariant=variant,
            ContentType="text/csv",
            Accept="text/csv",
            Body=body.encode(),
        )
        data: bytes = response["Body"].read()
        return data

    def _wait_for_endpoint(self) -> dict[str, Any] | None:
        deadline = self.clock() + self.wait_seconds
        while True:
            try:
                endpoint: dict[str, Any] = self.sagemaker.describe_endpoint(EndpointName=self.targets.endpoint)
            except _client_error():
                return None
            if endpoint.get("EndpointStatus") not in TRANSITIONAL or self.clock() >= deadline:
                return endpoint
            print(f"... {self.targets.endpoint} is {endpoint.get('EndpointStatus')}; waiting", flush=True)
            self.sleep(POLL_SECONDS)


def _client_error() -> Any:
    """botocore's ClientError (imported when used: the module loads without the AWS SDK)."""
    from botocore.exceptions import ClientError

    return ClientError


def _code(error: Any) -> str:
    return str(error.response.get("Error", {}).get("Code", "error"))


def _describe(error: Any) -> str:
    response = error.response
    if _code(error) == "ModelError":
        original = response.get("OriginalStatusCode")
        message = response.get("OriginalMessage") or response.get("Error", {}).get("Message", "")
        return f"HTTP {original} from the model: {str(message)[:200]}"
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return f"{_code(error)} (HTTP {status}): {response.get('Error', {}).get('Message', '')[:200]}"


def clients(env: EnvironmentConfig, role_arn: str | None) -> dict[str, Any]:
    import boto3

    session = boto3.Session(region_name=env.region)
    if role_arn:
        credentials = session.client("sts").assume_role(
            RoleArn=role_arn, RoleSessionName=f"smoke-test-{env.name}", DurationSeconds=3600
        )["Credentials"]
        session = boto3.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name=env.region,
        )
    return {
        name: session.client(service)
        for name, service in (("sagemaker", "sagemaker"), ("runtime", "sagemaker-runtime"), ("ssm", "ssm"))
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", required=True, help="environment name in config/environments.toml")
    parser.add_argument("--role-arn", help="role to assume for the checks (the environment's smoke-test role)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="platform config (TOML)")
    parser.add_argument("--latency-ms", type=float, help="slowest accepted answer (default: config's promotion)")
    parser.add_argument("--rows", type=int, help="sample customers per request (default: config's promotion)")
    parser.add_argument("--wait-seconds", type=float, default=900.0, help="how long to wait for an updating endpoint")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        env = config.environment(args.env)
    except ConfigError as error:
        print(f"Configuration error: {error}", file=sys.stderr)
        return 2
    promotion = config.promotion
    latency = args.latency_ms or (promotion.smoke_test_latency_ms if promotion else 1000.0)
    rows = args.rows or (promotion.smoke_test_rows if promotion else 5)
    if latency <= 0 or not 1 <= rows <= 100:
        print(f"--latency-ms must be above 0 and --rows 1-100 (got {latency}, {rows})", file=sys.stderr)
        return 2
    test = SmokeTest(
        targets(config.project, env),
        **clients(env, args.role_arn),
        latency_budget_ms=latency,
        rows=rows,
        wait_seconds=args.wait_seconds,
    )
    print(f"Smoke test of {env.name} ({env.account}, {env.region})", flush=True)
    results = test.run()
    for result in results:
        print(result.line(), flush=True)
    failed = [r for r in results if not r.passed]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
