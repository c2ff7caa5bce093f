"""cfn-lint and checkov on synthesized templates: the two scanners that run after synth.

Both are pinned (requirements-dev.txt, requirements-checkov.txt) and both honour the skips written
into template metadata by :mod:`policy.acknowledge`. checkov runs from its own virtual env because
its pins conflict with the CDK toolchain's.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHECKOV = PROJECT_ROOT / ".venv-checkov" / "bin" / "checkov"


class ScannerUnavailableError(RuntimeError):
    """A scanner is not installed where the project expects it."""


def cfn_lint(templates: Iterable[tuple[Path, str]]) -> list[str]:
    """Every cfn-lint match (errors and warnings) of each (template, region), as readable lines."""
    from cfnlint.api import ManualArgs, lint_file  # heavy: import it only when linting

    problems = []
    for path, region in templates:
        for match in lint_file(path, config=ManualArgs(regions=[region])):
            problems.append(f"{path.name}:{match.linenumber} {match.rule.id} {match.message}")
    return problems


@dataclass(frozen=True)
class CheckovResult:
    passed: int
    failed: list[str]  # "CKV_AWS_18 AWS::S3::Bucket.LogBucket in Dev/Data.template.json"
    skipped: list[tuple[str, str]]  # (check id, comment)


def checkov(directory: Path) -> CheckovResult:
    """checkov's CloudFormation checks on every template under ``directory``, offline."""
    if not CHECKOV.exists():
        raise ScannerUnavailableError(f"checkov is not installed at {CHECKOV}; run `make setup` first")
    environment = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    result = subprocess.run(  # noqa: S603  (a fixed executable inside the project)
        [str(CHECKOV), "-d", str(directory), "--framework", "cloudformation", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
        check=False,
    )
    if result.returncode not in (0, 1):  # 1 means "failed checks", anything else is a crash
        raise ScannerUnavailableError(f"checkov exited {result.returncode}: {result.stderr[-2000:]}")
    reports = json.loads(result.stdout) if result.stdout.strip() else []
    if isinstance(reports, dict):
        reports = [reports]
    passed, failed, skipped = 0, [], []
    for report in reports:
        results = report.get("results", {})
        passed += report.get("summary", {}).get("passed", 0)
        for check in results.get("failed_checks", []):
            failed.append(f"{check['check_id']} {check['resource']} in {check['file_path']}")
        for check in results.get("skipped_checks", []):
            skipped.append((check["check_id"], (check.get("check_result") or {}).get("suppress_comment", "")))
    return CheckovResult(passed=passed, failed=failed, skipped=skipped)
