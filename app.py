#!/usr/bin/env python3
"""The CDK app: one Stage per environment in ``config/environments.toml``, and the delivery pipeline.

    cdk synth                  # every environment, and the tooling account's delivery pipeline
    cdk synth -c env=prod      # one environment (an unknown name is an error, never a fallback)

The pipeline (stage ``Tooling``) deploys the very stages synthesized for the environments: their
templates are written once, under ``assembly-<Env>``, and the pipeline's actions point at them.

This is the only module that reads the CDK context or the process environment.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aws_cdk import App

PROJECT_ROOT = Path(__file__).resolve().parent
# The feature schema ships with the training code (training_code/feature_schema.json); the stacks
# read the same module, importable as it is inside the containers.
if str(PROJECT_ROOT / "training_code") not in sys.path:
    sys.path.append(str(PROJECT_ROOT / "training_code"))

from config import ConfigError, PlatformConfig, load_config
from policy.packs import register_policy_packs
from stacks.delivery_stage import ToolingStage
from stacks.platform_stage import PlatformStage


def project_context() -> dict[str, Any]:
    """Feature flags and settings from ``cdk.json``, so that tests synthesize what the CLI does."""
    return dict(json.loads((PROJECT_ROOT / "cdk.json").read_text())["context"])


def stage_id(env_name: str) -> str:
    return env_name.capitalize()


def create_app(
    *, outdir: str | None = None, context: Mapping[str, Any] | None = None, policy_packs: bool = True
) -> App:
    """An empty app with the project's feature flags and (unless told not to) every policy pack."""
    app = App(
        outdir=outdir,
        context={**project_context(), **(context or {})},
        analytics_reporting=False,
    )
    if policy_packs:
        register_policy_packs(app)
    return app


TOOLING_STAGE_ID = "Tooling"


def availability_zones_context(config: PlatformConfig) -> dict[str, list[str]]:
    """The answer to CDK's availability-zone lookups, from config: ``ec2.Vpc`` checks explicit zones
    against its stack's zones, which would otherwise be a lookup the CLI tries to make with credentials
    (the delivery pipeline makes the CLI resolve the environments' lookups too)."""
    zones: dict[str, set[str]] = {}
    for env in config.environments:
        zones.setdefault(f"availability-zones:account={env.account}:region={env.region}", set()).update(
            env.availability_zones
        )
    return {key: sorted(names) for key, names in zones.items()}


def add_environments(app: App, config: PlatformConfig, env_names: Sequence[str]) -> dict[str, PlatformStage]:
    for key, zones in availability_zones_context(config).items():
        app.node.set_context(key, zones)
    return {
        name: PlatformStage(app, stage_id(name), config=config, env_config=config.environment(name))
        for name in env_names
    }


def add_delivery_pipeline(app: App, config: PlatformConfig, stages: Mapping[str, PlatformStage]) -> ToolingStage | None:
    """The tooling account's delivery pipeline, deploying the stages above (the same ones, not copies)
    when config has [promotion] and every environment it deploys is in ``stages``."""
    promotion = config.promotion
    if promotion is None or not set(promotion.environments) <= set(stages):
        return None
    return ToolingStage(app, TOOLING_STAGE_ID, config=config, stages=dict(stages))


def build_app(
    config: PlatformConfig,
    env_names: Sequence[str],
    *,
    outdir: str | None = None,
    context: Mapping[str, Any] | None = None,
    policy_packs: bool = True,
) -> App:
    """An app with the named environments' stages (and every policy pack registered)."""
    app = create_app(outdir=outdir, context=context, policy_packs=policy_packs)
    add_delivery_pipeline(app, config, add_environments(app, config, env_names))
    return app


def main() -> int:
    app = create_app()
    requested = app.node.try_get_context("env")
    try:
        config = load_config()
        names = [config.environment(str(requested)).name] if requested else list(config.environment_names)
    except ConfigError as error:
        print(f"Configuration error: {error}", file=sys.stderr)
        return 1
    add_delivery_pipeline(app, config, add_environments(app, config, names))
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
