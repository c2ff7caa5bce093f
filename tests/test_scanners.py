"""cfn-lint and checkov report nothing on any synthesized template (skips carry reasons)."""

from __future__ import annotations

import pytest

from app import TOOLING_STAGE_ID, stage_id
from config import PlatformConfig
from policy.acknowledge import MIN_REASON_LENGTH
from policy.scanners import cfn_lint, checkov
from tests.conftest import Synthesized

pytestmark = pytest.mark.slow


def test_cfn_lint_finds_no_error_or_warning(synthesized: Synthesized, platform_config: PlatformConfig) -> None:
    regions = {stage_id(env.name): env.region for env in platform_config.environments}
    regions[TOOLING_STAGE_ID] = platform_config.tooling.region
    templates = [(path, regions[stack_id.split("/")[0]]) for stack_id, path in synthesized.template_paths.items()]
    assert len(templates) == len(synthesized.templates)
    assert cfn_lint(templates) == []


def test_checkov_fails_no_check(synthesized: Synthesized) -> None:
    result = checkov(synthesized.outdir)
    assert result.failed == []
    assert result.passed > 100  # it really scanned the templates
    for check_id, comment in result.skipped:
        assert len(comment) >= MIN_REASON_LENGTH, check_id
