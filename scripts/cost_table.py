"""Regenerate the README's table of each environment's fixed monthly cost (`make cost-table`).

The figures come from config and ``config/unit_prices.json`` (config/costs.py). A test fails when the
README and the computation disagree, so a config or price change is always reviewed in the README's diff.
"""

from __future__ import annotations

import sys
from pathlib import Path

from config import load_config
from config.costs import cost_table

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- fixed-cost:start -->", "<!-- fixed-cost:end -->"


def main() -> int:
    table = cost_table(load_config())
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
