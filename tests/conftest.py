"""Shared fixtures: the platform config and one synthesis of every environment per test session."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")  # Node 20 works; jsii warns

from app import build_app, stage_id
from config import PlatformConfig, load_config
from policy.acknowledge import AUDIT_CONTEXT_KEY
from policy.audit import AuditResult, audit

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Synthesized:
    """Every environment synthesized once, with all policy packs registered (so synth is the gate)."""

    outdir: Path
    templates: dict[str, dict[str, Any]]  # by hierarchical stack id, e.g. "Dev/Data"
    template_paths: dict[str, Path]
    report: dict[str, Any]  # validation-report.json

    def template(self, env: str, stack: str) -> dict[str, Any]:
        return self.templates[f"{stage_id(env)}/{stack}"]


@pytest.fixture(scope="session")
def platform_config() -> PlatformConfig:
    return load_config()


@pytest.fixture(scope="session")
def synthesized(platform_config: PlatformConfig, tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = build_app(platform_config, platform_config.environment_names, outdir=str(outdir))
    try:
        assembly = app.synth()
    except Exception as error:  # noqa: BLE001  (jsii raises a plain Exception carrying the report)
        pytest.fail(f"synth of every environment failed (policy gates or validation):\n{error}", pytrace=False)
    templates = {}
    paths = {}
    for stack in assembly.stacks_recursively:
        templates[stack.hierarchical_id] = stack.template
        paths[stack.hierarchical_id] = Path(stack.template_full_path)
    report = json.loads((outdir / "validation-report.json").read_text())
    return Synthesized(outdir=outdir, templates=templates, template_paths=paths, report=report)


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def walk(value: Any) -> Iterator[Any]:
    """Every nested value of a JSON-like structure, depth first."""
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


@pytest.fixture(scope="session")
def audited(platform_config: PlatformConfig, tmp_path_factory: pytest.TempPathFactory) -> AuditResult:
    """Every finding of every environment with acknowledgments recorded instead of applied."""
    app = build_app(
        platform_config,
        platform_config.environment_names,
        outdir=str(tmp_path_factory.mktemp("cdk.out.audit")),
        context={AUDIT_CONTEXT_KEY: True},
        policy_packs=False,
    )
    return audit(app, app.synth())


@pytest.fixture
def sagemaker_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty /opt/ml for one test: SAGEMAKER_BASE_DIR points at it, no SM_* variable leaks in."""
    for name in list(os.environ):
        if name.startswith(("SM_", "ML_PLATFORM_")):
            monkeypatch.delenv(name)
    root = tmp_path / "opt-ml"
    root.mkdir()
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(root))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return root


@pytest.fixture(scope="session")
def serving_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model like the pipeline's: 200 trees of depth 6 on the schema's features, as xgboost-model."""
    import numpy as np
    import xgboost as xgb

    from churn_data import generate_customers
    from feature_schema import load_schema

    names = list(load_schema().model_features)
    data = generate_customers(5000, seed=31)
    features = data[names].to_numpy(np.float32)
    features[::17, 3] = np.nan  # some missing values, so default branches are exercised
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "nthread": 1},
        xgb.DMatrix(features, label=data["churned"], feature_names=names),
        num_boost_round=200,
    )
    folder = tmp_path_factory.mktemp("model")
    (folder / "xgboost-model").write_bytes(booster.save_raw("ubj"))
    return folder


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def asgi_request(
    app: Any,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    chunk_size: int | None = None,
) -> Response:
    """One request through an ASGI app in this process (``chunk_size`` streams the body)."""
    import asyncio

    raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    scope = {"type": "http", "method": method, "path": path, "headers": raw_headers, "query_string": b""}
    size = chunk_size or max(len(body), 1)
    chunks = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Response(start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, payload)
