"""The README's fixed monthly cost table is the computation from config and the unit prices."""

from __future__ import annotations

import copy
import tomllib
from typing import Any

import pytest

from config import PlatformConfig, parse_config
from config.costs import (
    KMS_KEYS_PER_ENVIRONMENT,
    MissingPriceError,
    cost_table,
    endpoint_instance_count,
    fixed_cost,
    unit_prices,
)
from config.settings import DEFAULT_CONFIG_PATH
from tests.conftest import ROOT, Synthesized, resources_of_type

README = ROOT / "README.md"


def test_readme_shows_the_computed_table(platform_config: PlatformConfig) -> None:
    table = cost_table(platform_config)
    assert table in README.read_text(), (
        "README's fixed-cost table is out of date; regenerate it with `make cost-table` and review:\n" + table
    )


def test_unit_prices_name_their_sources_and_date() -> None:
    prices = unit_prices()
    assert prices["recorded"]
    assert set(prices["sources"]) >= {
        "sagemaker_realtime_instance_hour",
        "vpc_interface_endpoint_az_hour",
        "kms_key_month",
    }
    assert all(source.startswith("https://aws.amazon.com/") for source in prices["sources"].values())


def test_the_parts_are_config_times_unit_prices(platform_config: PlatformConfig) -> None:
    prices = unit_prices()["regions"]["eu-west-1"]
    prod = platform_config.environment("prod")
    cost = fixed_cost(prod)
    # One Champion variant at its autoscaling floor (2) plus the Shadow's 2 instances.
    assert endpoint_instance_count(prod) == 4
    assert cost.endpoint_instances == pytest.approx(
        4 * prices["sagemaker_realtime_instance_hour"]["ml.c5.xlarge"] * 730
    )
    endpoints = len(prod.network.interface_endpoints)
    assert cost.vpc_endpoints == pytest.approx(endpoints * 3 * prices["vpc_interface_endpoint_az_hour"] * 730)
    assert cost.kms_keys == 3 * prices["kms_key_month"]
    dev_config = platform_config.environment("dev")
    dev = fixed_cost(dev_config)
    assert dev.endpoint_instances == 0  # serverless
    dev_endpoints = len(dev_config.network.interface_endpoints)
    assert dev.vpc_endpoints == pytest.approx(dev_endpoints * 2 * prices["vpc_interface_endpoint_az_hour"] * 730)
    assert dev.vpc_endpoints < cost.vpc_endpoints / 2  # dev trimmed to what it uses


def test_every_budget_covers_the_fixed_cost(platform_config: PlatformConfig) -> None:
    for env in platform_config.environments:
        assert env.operations.monthly_budget_usd > 1.5 * fixed_cost(env).total, env.name


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_the_kms_key_count_is_what_synthesizes(synthesized: Synthesized, env: str) -> None:
    keys = sum(
        len(resources_of_type(t, "AWS::KMS::Key"))
        for k, t in synthesized.templates.items()
        if k.startswith(env.capitalize())
    )
    assert keys == KMS_KEYS_PER_ENVIRONMENT


def test_a_missing_price_is_an_error_naming_what_to_add() -> None:
    raw: dict[str, Any] = tomllib.loads(DEFAULT_CONFIG_PATH.read_text())
    moved = copy.deepcopy(raw)
    staging = next(e for e in moved["environments"] if e["name"] == "staging")
    staging["serving"]["instance_type"] = "ml.m5.4xlarge"
    with pytest.raises(MissingPriceError, match=r"no real-time price for ml\.m5\.4xlarge in eu-west-1"):
        fixed_cost(parse_config(moved).environment("staging"))
    elsewhere = copy.deepcopy(raw)
    dev = next(e for e in elsewhere["environments"] if e["name"] == "dev")
    dev["region"], dev["availability_zones"] = "us-east-2", ["us-east-2a", "us-east-2b"]
    with pytest.raises(MissingPriceError, match="no prices for region us-east-2"):
        fixed_cost(parse_config(elsewhere).environment("dev"))
