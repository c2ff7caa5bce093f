"""One readable JSON snapshot per stack per environment (`pytest --snapshot-update` to accept a change).

Snapshots catch every change to a template, including ones no fine-grained assertion anticipates;
review their diff like code. Asset hashes are scrubbed: they change with CDK's bundled handler code.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

from tests.conftest import Synthesized

ASSET_HASH = re.compile(r"[0-9a-f]{64}")
STACKS = [
    f"{stage}/{stack}"
    for stage in ("Dev", "Staging", "Prod")
    for stack in ("Data", "Network", "Operations", "Training", "Deployment", "Serving", "Monitoring")
    if (stage, stack) != ("Dev", "Monitoring")  # dev serves serverless: no capture, not monitored
] + ["Tooling/Pipeline"]  # the delivery pipeline


def scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: scrub(item) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub(item) for item in value]
    if isinstance(value, str):
        return ASSET_HASH.sub("<asset-hash>", value)
    return value


@pytest.fixture
def json_snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension)


def test_every_stack_has_a_snapshot(synthesized: Synthesized) -> None:
    assert sorted(synthesized.templates) == sorted(STACKS)


@pytest.mark.parametrize("stack_id", STACKS)
def test_template_matches_snapshot(synthesized: Synthesized, json_snapshot: SnapshotAssertion, stack_id: str) -> None:
    assert scrub(synthesized.templates[stack_id]) == json_snapshot
