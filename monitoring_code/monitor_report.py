"""The monitoring run's HTML report: one page, plots embedded, readable without the JSON files."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # no display in a processing job
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

if TYPE_CHECKING:
    from monitor import VariantResult

STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}.bad{color:#b00;font-weight:bold}"
    ".ok{color:#070}img{max-width:100%}"
)


def _png(draw: Callable[[Any], None], size: tuple[float, float], **spacing: float) -> str:
    figure = plt.figure(figsize=size, dpi=80)
    draw(figure)
    if spacing:
        figure.subplots_adjust(**spacing)  # fixed spacing: tight_layout costs more than the drawing
    else:
        figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _distributions(result: VariantResult, names: Sequence[str]) -> str:
    drift = {item.feature: item for item in result.drift}
    columns = [*names, "score"]
    cols = 4
    rows = (len(columns) + cols - 1) // cols

    def draw(figure: Any) -> None:
        for index, name in enumerate(columns):
            axes = figure.add_subplot(rows, cols, index + 1)
            now = result.sample[:, index] if result.sample.size else np.empty(0)
            now = now[~np.isnan(now)]
            then = np.empty(0)
            if result.baseline_sample is not None:
                then = result.baseline_sample[:, index]
                then = then[~np.isnan(then)]
            both = np.concatenate([now, then])
            if len(both):
                low, high = np.percentile(both, [0.5, 99.5])
                bins = np.linspace(low, high if high > low else low + 1, 30)
                for values, label in ((then, "baseline"), (now, "window")):
                    if len(values):
                        counts, _ = np.histogram(np.clip(values, low, bins[-1]), bins=bins, density=True)
                        axes.stairs(counts, bins, fill=True, alpha=0.5, label=label)
            item = drift.get(name)
            title = name if item is None else f"{name}\n{item.method} {item.distance:.3f}"
            axes.set_title(title, fontsize=8, color="#b00" if item is not None and item.violation else "black")
            axes.set_yticks([])  # densities: the shapes matter, not the numbers
            axes.xaxis.set_major_locator(MaxNLocator(4))
            axes.tick_params(labelsize=6)
            if index == 0:
                axes.legend(fontsize=6)

    return _png(draw, (11, 2.2 * rows), left=0.04, right=0.99, bottom=0.05, top=0.93, wspace=0.25, hspace=0.6)


def _attribution(result: VariantResult) -> str:
    names = sorted(result.attribution_baseline, key=result.attribution_baseline.__getitem__)

    def draw(figure: Any) -> None:
        axes = figure.add_subplot(1, 1, 1)
        y = np.arange(len(names))
        axes.barh(y - 0.2, [result.attribution_baseline[n] for n in names], height=0.4, label="baseline")
        axes.barh(y + 0.2, [result.attribution.get(n, 0.0) for n in names], height=0.4, label="window")
        axes.set_yticks(y, names, fontsize=7)
        axes.set(xlabel="mean |SHAP| (log-odds)", title=f"Feature attribution, nDCG {result.ndcg:.3f}")
        axes.legend(fontsize=7)

    return _png(draw, (6, 3.5))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _variant_section(name: str, result: VariantResult, variant: dict[str, Any], names: Sequence[str]) -> str:
    parts = [f"<h2>{html.escape(name)}</h2>"]
    parts.append(
        f"<p>{variant['records']} records, {variant['labelled_records']} labelled, "
        f"{variant['malformed_records']} malformed lines.</p>"
    )
    parts.append(_table(["check", "status", "violations"], [
        (html.escape(check), html.escape(status), _count(variant["violations"].get(check, 0)))
        for check, status in variant["checks"].items()
    ]))  # fmt: skip
    violations = [v for items in result.violations.values() for v in items]
    if violations:
        parts.append("<h3>Violations</h3>")
        parts.append(_table(["type", "check", "feature / metric", "description"], [
            (v["monitoring_type"], html.escape(v["constraint_check_type"]),
             html.escape(str(v.get("feature_name") or v.get("metric_name", ""))), html.escape(v["description"]))
            for v in violations
        ]))  # fmt: skip
    if result.drift:
        parts.append("<h3>Drift per feature</h3>")
        parts.append(_table(["feature", "method", "distance", "p-value", "values", "baseline sample"], [
            (html.escape(d.feature), d.method, f"<span class='{'bad' if d.violation else 'ok'}'>{d.distance:.4f}</span>",
             f"{d.p_value:.2g}", d.current, d.baseline)
            for d in result.drift
        ]))  # fmt: skip
    if result.records:
        parts.append(
            f'<img alt="distributions of {html.escape(name)}" src="data:image/png;base64,{_distributions(result, names)}">'
        )
    if result.quality:
        parts.append("<h3>Model quality</h3>")
        parts.append(_table(["metric", "window", "registered evaluation"], [
            (metric, f"{value:.4f}", f"{result.quality_baseline[metric]:.4f}" if metric in result.quality_baseline else "—")
            for metric, value in result.quality.items()
        ]))  # fmt: skip
    if result.bias:
        parts.append("<h3>Bias</h3>")
        parts.append(_table(["attribute", "segment", "metric", "window", "baseline", "p-value", "judged"], [
            (html.escape(b.attribute), f"{b.facet:g}", b.metric,
             f"<span class='{'bad' if b.violation else 'ok'}'>{b.current:.4f}</span>", f"{b.baseline:.4f}",
             f"{b.p_value:.2g}", "yes" if b.judged else "no (too few records)")
            for b in result.bias
        ]))  # fmt: skip
    if result.attribution:
        parts.append(
            f'<img alt="attribution of {html.escape(name)}" src="data:image/png;base64,{_attribution(result)}">'
        )
    return "".join(parts)


def _count(value: int) -> str:
    return f"<span class='{'bad' if value else 'ok'}'>{value}</span>"


def write_report(
    path: Path,
    summary: dict[str, Any],
    results: dict[str, VariantResult],
    comparisons: list[dict[str, Any]],
    names: Sequence[str],
) -> Path:
    verdict = "retrain recommended" if summary["retrain_recommended"] else "no retraining"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Monitoring {html.escape(summary['endpoint'])}</title><style>{STYLE}</style></head><body>",
        f"<h1>Monitoring {html.escape(summary['endpoint'])}</h1>",
        (
            f"<p>Window {html.escape(summary['window']['start'])} to {html.escape(summary['window']['end'])}: "
            f"<b>{html.escape(summary['status'])}</b>, {verdict}. {html.escape(summary['retrain_reason'])}</p>"
        ),
    ]
    for action in summary["actions"]:
        parts.append(f"<p><b>{html.escape(action['action'])}</b>: {html.escape(action['reason'])}</p>")
    if comparisons:
        parts.append("<h2>Champion vs challengers (AUC)</h2>")
        parts.append(_table(["challenger", "champion", "difference", "interval", "verdict", "labelled records"], [
            (html.escape(c["challenger"]), html.escape(c["champion"]),
             f"{c['difference']:+.4f}" if "difference" in c else "—",
             html.escape(str(c.get("interval", "—"))), html.escape(c["verdict"]),
             html.escape(", ".join(f"{k} {v}" for k, v in c["labelled_records"].items())))
            for c in comparisons
        ]))  # fmt: skip
    truth = summary["ground_truth"]
    parts.append(
        f"<p>Ground truth: {truth['records']} records, {truth['duplicates']} duplicate ids, "
        f"{truth['malformed']} malformed lines, {truth['unmatched']} ids with no captured request.</p>"
    )
    labels = summary["labels"]
    where = (
        "the labelled capture (the window one label delay back)"
        if labels["matched_in"] == "labelled_capture"
        else "this window's capture"
    )
    note = f" {html.escape(labels['note'])}." if "note" in labels else ""
    parts.append(
        f"<p>Model quality, label-based bias metrics and challenger comparisons: labels matched against {where}, "
        f"{labels['records']} records.{note}</p>"
    )
    for name, result in results.items():
        parts.append(_variant_section(name, result, summary["variants"][name], names))
    parts.append("</body></html>")
    path.write_text("".join(parts), encoding="utf-8")
    return path
