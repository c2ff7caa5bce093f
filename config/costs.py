"""The fixed monthly cost of each environment: what it costs with no traffic and no training.

Computed from config and the unit prices in ``config/unit_prices.json`` (one file, with its sources and
the date the prices were recorded): real-time or async endpoint instances that never scale in below
their floor, interface VPC endpoints in every availability zone, the customer managed KMS keys and
the Feature Store's provisioned throughput. Usage (requests, jobs, storage, data processed) comes on
top. ``make cost-table`` writes the README's table; a test keeps them equal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from config.settings import EnvironmentConfig, PlatformConfig

PRICES_PATH = Path(__file__).with_name("unit_prices.json")
# One customer managed key per data domain (docs/decisions/0002): data, model, logs (stacks/data_stack.py).
KMS_KEYS_PER_ENVIRONMENT = 3


class MissingPriceError(LookupError):
    """config/unit_prices.json has no price for something an environment pays for."""


@cache
def unit_prices(path: Path = PRICES_PATH) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@dataclass(frozen=True)
class FixedCost:
    """One environment's fixed monthly cost in USD, by part, with how each part was counted."""

    environment: str
    region: str
    endpoint_instances: float
    endpoint_detail: str
    vpc_endpoints: float
    vpc_endpoint_detail: str
    kms_keys: float
    kms_detail: str
    feature_store: float
    feature_store_detail: str

    @property
    def total(self) -> float:
        return round(self.endpoint_instances + self.vpc_endpoints + self.kms_keys + self.feature_store, 2)


def _region_prices(env: EnvironmentConfig) -> dict[str, Any]:
    regions: dict[str, Any] = unit_prices()["regions"]
    if env.region not in regions:
        raise MissingPriceError(
            f"config/unit_prices.json has no prices for region {env.region} (environment {env.name}); add them "
            "from the pages listed under sources"
        )
    prices: dict[str, Any] = regions[env.region]
    return prices


def endpoint_instance_count(env: EnvironmentConfig) -> int:
    """Instances the endpoint keeps at least: the floor of every production variant (autoscaling never
    goes below min_capacity; without autoscaling the initial count) and the shadow's initial count."""
    serving = env.serving
    if serving.inference_type == "serverless":
        return 0
    floor = serving.min_capacity if serving.autoscaling else serving.initial_instance_count
    shadow = serving.initial_instance_count if serving.shadow_variant else 0
    return floor * len(serving.variants) + shadow


def fixed_cost(env: EnvironmentConfig) -> FixedCost:
    prices = _region_prices(env)
    hours = float(unit_prices()["hours_per_month"])
    instances = endpoint_instance_count(env)
    if instances:
        hourly = prices["sagemaker_realtime_instance_hour"].get(env.serving.instance_type)
        if hourly is None:
            raise MissingPriceError(
                f"config/unit_prices.json has no real-time price for {env.serving.instance_type} in {env.region} "
                f"(environment {env.name}); add it from the SageMaker pricing page"
            )
        endpoint = round(instances * hourly * hours, 2)
        endpoint_detail = f"{instances} × {env.serving.instance_type}"
    else:
        endpoint, endpoint_detail = 0.0, f"{env.serving.inference_type}: scales to zero"
    zones = len(env.availability_zones)
    services = len(env.network.interface_endpoints)
    vpc = round(services * zones * prices["vpc_interface_endpoint_az_hour"] * hours, 2)
    kms = round(KMS_KEYS_PER_ENVIRONMENT * prices["kms_key_month"], 2)
    store = env.feature_store
    if store.throughput_mode == "Provisioned":
        throughput = prices.get("feature_store_provisioned")
        if throughput is None:
            raise MissingPriceError(
                f"config/unit_prices.json has no Feature Store provisioned-throughput prices for {env.region} "
                f"(environment {env.name}); add read_capacity_unit_hour and write_capacity_unit_hour"
            )
        feature_store = round(
            (
                store.read_capacity_units * throughput["read_capacity_unit_hour"]
                + store.write_capacity_units * throughput["write_capacity_unit_hour"]
            )
            * hours,
            2,
        )
        store_detail = f"{store.read_capacity_units} RCU, {store.write_capacity_units} WCU"
    else:
        feature_store, store_detail = 0.0, "on-demand: per request and GB"
    return FixedCost(
        environment=env.name,
        region=env.region,
        endpoint_instances=endpoint,
        endpoint_detail=endpoint_detail,
        vpc_endpoints=vpc,
        vpc_endpoint_detail=f"{services} × {zones} AZ",
        kms_keys=kms,
        kms_detail=f"{KMS_KEYS_PER_ENVIRONMENT} keys",
        feature_store=feature_store,
        feature_store_detail=store_detail,
    )


def _usd(value: float) -> str:
    return f"{value:,.2f}"


def cost_table(config: PlatformConfig) -> str:
    """The README's table: one row per environment, each part with how it was counted."""
    data = unit_prices()
    lines = [
        (
            "| Environment | Endpoint instances | Interface VPC endpoints | KMS keys | Feature Store | Fixed total (USD/month) "
            "| Budget (USD/month) |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for env in config.environments:
        cost = fixed_cost(env)
        lines.append(
            f"| {env.name} ({env.region}) | {_usd(cost.endpoint_instances)} ({cost.endpoint_detail}) "
            f"| {_usd(cost.vpc_endpoints)} ({cost.vpc_endpoint_detail}) | {_usd(cost.kms_keys)} ({cost.kms_detail}) "
            f"| {_usd(cost.feature_store)} ({cost.feature_store_detail}) | **{_usd(cost.total)}** "
            f"| {_usd(env.operations.monthly_budget_usd)} |"
        )
    lines.append("")
    lines.append(
        f"Unit prices: `config/unit_prices.json`, recorded {data['recorded']}, {data['hours_per_month']} hours a month."
    )
    return "\n".join(lines)
