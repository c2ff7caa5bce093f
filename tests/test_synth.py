"""Synth is offline and deterministic: no credentials, no network, no boto3, no clocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import build_app
from config import PlatformConfig
from tests.conftest import ROOT, Synthesized

pytestmark = pytest.mark.slow

# Runs app.py as `cdk synth` does, with every network call from Python refused, then reports which
# AWS SDK modules were imported.
OFFLINE_RUNNER = """
import json, runpy, sys

def refuse_network(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "http.client.connect"):
        raise RuntimeError(f"network access during synth: {event} {args!r}")

sys.addaudithook(refuse_network)
sys.argv = ["app.py"]
try:
    runpy.run_path("app.py", run_name="__main__")
except SystemExit as done:
    code = done.code
sdk = sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore", "sagemaker"))
print(json.dumps({"exit": code, "sdk_modules": sdk}))
"""


def offline_environment(outdir: Path) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    environment.update(
        {
            "CDK_OUTDIR": str(outdir),
            "AWS_CONFIG_FILE": "/nonexistent/aws-config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
            "AWS_EC2_METADATA_DISABLED": "true",
            "HTTPS_PROXY": "http://127.0.0.1:9",  # a closed port: any HTTP client that tries, fails
            "HTTP_PROXY": "http://127.0.0.1:9",
        }
    )
    return environment


def test_synth_offline_without_credentials_is_byte_identical(synthesized: Synthesized, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_RUNNER],
        check=False,
        cwd=ROOT,
        env=offline_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {"exit": 0, "sdk_modules": []}, result.stderr[-4000:]

    second = sorted(tmp_path.glob("assembly-*/*.template.json"))
    first = sorted(synthesized.outdir.glob("assembly-*/*.template.json"))
    assert [p.relative_to(tmp_path) for p in second] == [p.relative_to(synthesized.outdir) for p in first]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), f"{a.name} differs between two synths"


def test_one_environment_can_be_synthesized_alone(platform_config: PlatformConfig) -> None:
    app = build_app(platform_config, ["prod"])
    # No delivery pipeline: it deploys every environment of the promotion, so it needs them all.
    assert [child.node.id for child in app.node.children] == ["Prod"]
    stacks = [c.node.id for c in app.node.find_child("Prod").node.children]
    assert stacks == ["Data", "Network", "Operations", "Training", "Deployment", "Serving", "Monitoring"]


def test_every_environment_and_the_delivery_pipeline_are_synthesized_once(synthesized: Synthesized) -> None:
    """The pipeline deploys the environments' own stages: their templates exist once, under the
    environments' assemblies, and the pipeline's stack is the only one in the tooling assembly."""
    assemblies = sorted(p.name for p in synthesized.outdir.iterdir() if p.name.startswith("assembly-"))
    assert assemblies == ["assembly-Dev", "assembly-Prod", "assembly-Staging", "assembly-Tooling"]
    names = [p.name for p in synthesized.outdir.rglob("*.template.json")]
    assert len(names) == len(set(names)) == len(synthesized.templates)
    assert [p.name for p in (synthesized.outdir / "assembly-Tooling").glob("*.template.json")] == [
        synthesized.template_paths["Tooling/Pipeline"].name
    ]


def test_synth_asks_for_no_lookup(synthesized: Synthesized) -> None:
    """The CLI resolves the context an assembly reports missing with AWS calls; zones come from config."""
    for manifest in [synthesized.outdir / "manifest.json", *synthesized.outdir.glob("assembly-*/manifest.json")]:
        assert json.loads(manifest.read_text()).get("missing", []) == [], manifest
