"""The main job (`make run`): everything the platform can show without an AWS account.

1. Synthesize every environment offline into ./cdk.out with all policy packs as the gate, then run
   cfn-lint and checkov on the templates and print a summary per environment and stack.
2. Train the churn model locally with the code the pipeline runs (build the point-in-time training
   set from a local offline store and labels -> preprocess -> train -> evaluate, in the SageMaker
   layout) on generated data, and print its AUC and where the model and report are.
3. Serve that model with the serving container's entry point, score a few sample customers, and
   print the answers and the latency.
4. Monitor that model: its baselines (baseline.py), then a clean and a shifted replay of captured
   traffic through monitor.py, and print both summaries and where the reports are.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from config import ConfigError, load_config
from scripts import local_monitoring
from scripts.local_serving import ServerFailedError, demo
from scripts.local_training import DEFAULT_RUN_DIR, StepFailedError, run_pipeline, summary
from scripts.synth_report import format_report, synth_and_scan

ROOT = Path(__file__).resolve().parent.parent
LOCAL_ROWS = 100_000


def step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def main() -> int:
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    try:
        config = load_config()
    except ConfigError as error:
        print(f"Configuration error: {error}", file=sys.stderr)
        return 1

    step(f"Synthesizing {', '.join(config.environment_names)} offline (policy packs, cfn-lint, checkov)")
    try:
        report = synth_and_scan(config, ROOT / "cdk.out")
    except Exception as error:  # noqa: BLE001  (jsii raises a plain Exception carrying the report)
        print(f"Synth failed the policy gates:\n{error}", file=sys.stderr)
        return 1
    print(format_report(report))
    if not report.ok:
        return 1
    print(f"\nTemplates: {ROOT / 'cdk.out'} (to deploy, see README: 'Bootstrap and deploy an environment').")

    step(
        "Training locally: training set from the feature store -> preprocess -> train -> evaluate, "
        "the pipeline's code in the SageMaker layout"
    )
    try:
        training = run_pipeline(
            DEFAULT_RUN_DIR, rows=LOCAL_ROWS, source="feature_store", progress=lambda line: print(line, flush=True)
        )
    except StepFailedError as error:
        print(f"Local training failed: {error}", file=sys.stderr)
        return 1
    print(summary(training))

    step("Serving locally: inference_code/serve on the trained model, as the endpoint runs it")
    try:
        print(demo(training.model_archive))
    except ServerFailedError as error:
        print(f"Local serving failed: {error}", file=sys.stderr)
        return 1

    step("Monitoring locally: baselines, then a clean and a shifted replay of captured traffic through monitor.py")
    try:
        print(local_monitoring.demo(DEFAULT_RUN_DIR))
    except (FileNotFoundError, RuntimeError) as error:
        print(f"Local monitoring failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
