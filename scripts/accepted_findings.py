"""Regenerate the README's table of accepted policy findings from the code (`make accepted-findings`).

The table lists every acknowledgment of every environment with its reason. A test fails when the
README and the code disagree, so a new acknowledgment is always reviewed in the README's diff.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from app import build_app
from config import load_config
from policy.acknowledge import AUDIT_CONTEXT_KEY
from policy.audit import accepted_findings_table, audit

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- accepted-findings:start -->", "<!-- accepted-findings:end -->"


def main() -> int:
    config = load_config()
    with tempfile.TemporaryDirectory() as outdir:
        app = build_app(
            config, config.environment_names, outdir=outdir, context={AUDIT_CONTEXT_KEY: True}, policy_packs=False
        )
        table = accepted_findings_table(audit(app, app.synth()))
    text = README.read_text()
    if START not in text or END not in text:
        print(f"README.md lacks the markers {START} ... {END}", file=sys.stderr)
        return 1
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{table}\n{END}{tail}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
