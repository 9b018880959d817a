"""The report as one self-contained HTML page: inline CSS, the charts as base64 data URIs, no
script, font, stylesheet or image fetched from anywhere.

Everything shown that came from a trigger or a data file (dataset locations, class labels,
parameters) is escaped with :func:`html.escape`; numbers are formatted here.
"""

from __future__ import annotations

import base64
import html
import json
import math
from typing import Any

from stepml.tabular.mnist2016 import AMAZON_ML_2016

CSS = """
:root { --ink:#1d3557; --muted:#5c677d; --line:#e3e7ee; --bg:#f5f7fa; --card:#fff;
        --ok:#2a9d8f; --bad:#e76f51; --accent:#264653; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font:15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width:1120px; margin:0 auto; padding:28px 24px 48px; }
header.top { background:var(--accent); color:#fff; padding:26px 28px; border-radius:12px; }
header.top .eyebrow { text-transform:uppercase; letter-spacing:.08em; font-size:12px; opacity:.75; }
header.top h1 { margin:4px 0 6px; font-size:26px; word-break:break-all; }
header.top .sub { margin:0; opacity:.9; }
.badge { display:inline-block; padding:2px 10px; border-radius:999px; font-size:12px; font-weight:600;
         vertical-align:middle; margin-left:8px; background:var(--ok); color:#fff; }
.badge.bad { background:var(--bad); }
.tiles { display:grid; grid-template-columns:repeat(auto-fit, minmax(160px, 1fr)); gap:12px; margin:18px 0; }
.tile { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:12px 16px; }
.tile .value { font-size:24px; font-weight:700; }
.tile .name { color:var(--muted); font-size:13px; }
.compare { background:#fff8e6; border:1px solid #f2d58b; border-radius:10px; padding:12px 16px; margin:0 0 18px; }
.notes { background:#eef3fb; border:1px solid #c9d6ea; border-radius:10px; padding:10px 16px; margin:0 0 18px; }
.notes p { margin:4px 0; }
.grid2 { display:grid; grid-template-columns:repeat(auto-fit, minmax(420px, 1fr)); gap:18px; margin-bottom:18px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:12px; padding:16px 20px; margin:0 0 18px; }
.grid2 .card { margin:0; }
h2 { font-size:17px; margin:0 0 10px; }
table { border-collapse:collapse; width:100%; font-size:14px; }
th, td { text-align:left; padding:5px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
th { color:var(--muted); font-weight:600; white-space:nowrap; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tr.total td { font-weight:700; border-top:2px solid var(--ink); border-bottom:none; }
table.kv th { width:34%; }
code { font:12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background:#f0f2f6;
       padding:1px 5px; border-radius:4px; word-break:break-word; }
details { margin-top:6px; } summary { cursor:pointer; color:var(--muted); }
figure { margin:0; }
figure img { display:block; max-width:100%; height:auto; margin:6px auto; }
figcaption { color:var(--muted); font-size:13.5px; }
.small { color:var(--muted); font-size:13px; }
footer { color:var(--muted); font-size:13px; margin-top:24px; }
"""


def e(value: Any) -> str:
    """Text for the page: escaped, quotes included (safe in element content and attributes)."""
    return html.escape(str(value), quote=True)


# -- number formatting ---------------------------------------------------------------------
def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if abs(value) >= 10 ** digits:                  # 20670.4 -> "20,670", not "2.067e+04"
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def usd(value: float | None) -> str:
    """Dollars with enough decimals to show two significant digits of small amounts."""
    if value is None:
        return "n/a"
    if value == 0:
        return "$0.00"
    decimals = max(2, 1 - math.floor(math.log10(abs(value))))
    return f"${value:,.{decimals}f}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# -- page pieces ---------------------------------------------------------------------------
def _code(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return f"<code>{e(text)}</code>"


def dataset_text(dataset: dict) -> str:
    """Where the data came from, as escaped HTML."""
    kind = dataset.get("kind", "?")
    if kind == "mnist":
        where = dataset.get("s3_prefix") or dataset.get("source") or ""
        return f"MNIST ({e(dataset.get('source', ''))}{': ' + _code(where) if dataset.get('s3_prefix') else ''})"
    parts = [f"training {_code(dataset['training']['data'])}"] if isinstance(dataset.get("training"), dict) else []
    if isinstance(dataset.get("evaluation"), dict):
        parts.append(f"evaluation {_code(dataset['evaluation']['data'])}")
    if dataset.get("schema"):
        parts.append(f"schema {_code(dataset['schema'])}")
    return f"{e(kind.upper())}: " + ", ".join(parts)


def tiles(report: dict) -> list[tuple[str, str]]:
    """The headline figures of the model type, (value, name) each."""
    metrics, model_type = report.get("metrics") or {}, report["model"]["type"]
    baseline = metrics.get("baseline") or {}
    if model_type == "REGRESSION":
        out = [(number(metrics.get("RegressionRMSE")), "RMSE (RegressionRMSE)"), (number(metrics.get("mae")), "MAE"),
               (number(metrics.get("r2")), "R²")]
        if "RegressionRMSE" in baseline:
            out.append((number(baseline["RegressionRMSE"]), "baseline RMSE (training mean)"))
        return out
    if model_type == "BINARY":
        out = [(number(metrics.get("BinaryAUC")), "AUC (BinaryAUC)"), (percent(metrics.get("accuracy")), "accuracy"),
               (percent(metrics.get("precision")), "precision"), (percent(metrics.get("recall")), "recall"),
               (percent(metrics.get("f1")), "F1")]
        if "accuracy" in baseline:
            out.append((percent(baseline["accuracy"]), "baseline accuracy"))
        return out
    out = [(percent(metrics.get("accuracy")), "accuracy"),
           (percent(metrics.get("macro_f1")), "macro F1 (MulticlassAvgFScore)")]
    if metrics.get("log_loss") is not None:
        out.append((number(metrics["log_loss"]), "log loss"))
    if "accuracy" in baseline:
        out.append((percent(baseline["accuracy"]), "baseline accuracy (most frequent class)"))
    return out


def comparison_2016(report: dict, wall_seconds: float | None) -> str:
    """The 2016 Amazon ML MNIST run beside this one."""
    then = AMAZON_ML_2016
    accuracy = (report.get("metrics") or {}).get("accuracy")
    total = (report.get("cost") or {}).get("total_usd")
    return (f"<p class=\"compare\"><strong>Against Amazon ML, 2016, on MNIST:</strong> "
            f"{100 * then['accuracy']:.1f}% accuracy, about ${then['cost_usd']:.2f}, about {then['hours']} hours. "
            f"<strong>This run:</strong> {percent(accuracy)} accuracy, {usd(total)} estimated, "
            f"{duration(wall_seconds)} wall time.</p>")


def run_table(report: dict, context: dict) -> str:
    model, dataset, training = report.get("model") or {}, report.get("dataset") or {}, report.get("training") or {}
    rows = [
        ("run id", _code(report.get("run_id", ""))),
        ("status", e(report.get("status", ""))),
        ("dataset", dataset_text(dataset)),
        ("rows", f"{number(dataset.get('train_rows'))} training, {number(dataset.get('test_rows'))} evaluation"),
    ]
    if context.get("predicted_rows") is not None and context["predicted_rows"] != context.get("expected_rows"):
        rows.append(("rows predicted", f"{context['predicted_rows']:,} of {context['expected_rows']:,} "
                                       f"(the rest were not scored; charts cover the predicted rows)"))
    if dataset.get("reused_from"):
        rows.append(("datasource", f"reused from run {_code(dataset['reused_from'])}"))
    rows += [
        ("model type", e(model.get("type", ""))),
        ("engine", e(model.get("engine", ""))),
        ("algorithm", e(model.get("algorithm") or training.get("algorithm") or "")
         + (f" (preset {e(model['preset'])})" if model.get("preset") else "")),
        ("parameters", _code(model.get("parameters") or {})
         + (f"<details><summary>as trained</summary>{_code(training['parameters'])}</details>"
            if training.get("parameters") else "")),
        ("seed", e(model.get("seed", ""))),
        ("code version", e(report.get("code_version", ""))),
        ("created at", e(report.get("created_at", ""))),
        ("wall time", duration(context.get("wall_seconds"))),
    ]
    summary = training.get("summary") or {}
    if summary:
        rows.append(("training", f"{e(summary.get('epochs_completed'))}/{e(summary.get('epochs_planned'))} "
                                 f"epochs, stopped: {e(summary.get('stop_reason'))}, "
                                 f"kept epoch {e(summary.get('best_epoch'))}"))
    body = "".join(f"<tr><th>{e(name)}</th><td>{value}</td></tr>" for name, value in rows)
    steps = report.get("seconds_per_step") or {}
    step_rows = "".join(f"<tr><td>{e(step)}</td><td class=\"num\">{duration(float(seconds))}</td></tr>"
                        for step, seconds in steps.items() if isinstance(seconds, (int, float)))
    step_table = (f"<h2 style=\"margin-top:16px\">Time per step</h2><table><tr><th>step</th>"
                  f"<th class=\"num\">seconds</th></tr>{step_rows}</table>") if step_rows else ""
    return f"<div class=\"card\"><h2>Run</h2><table class=\"kv\">{body}</table>{step_table}</div>"


def cost_table(cost: dict | None) -> str:
    if not cost:
        return "<div class=\"card\"><h2>Cost estimate</h2><p class=\"small\">No cost estimate recorded.</p></div>"
    rows = "".join(
        f"<tr><td>{e(line.get('item', ''))}</td><td class=\"num\">{number(line.get('quantity'), 6)} "
        f"{e(line.get('unit', ''))}</td><td class=\"num\">{usd(line.get('unit_price_usd'))}</td>"
        f"<td class=\"num\">{usd(line.get('usd'))}</td></tr>"
        for line in cost.get("lines") or [])
    incomplete = "" if cost.get("complete", True) else " (some lines have no price)"
    return (f"<div class=\"card\"><h2>Cost estimate</h2><table><tr><th>item</th><th class=\"num\">quantity</th>"
            f"<th class=\"num\">unit price</th><th class=\"num\">USD</th></tr>{rows}"
            f"<tr class=\"total\"><td colspan=\"3\">total{e(incomplete)}</td>"
            f"<td class=\"num\">{usd(cost.get('total_usd'))}</td></tr></table>"
            f"<p class=\"small\">{e(cost.get('prices', ''))}</p></div>")


def figure(chart: dict) -> str:
    return (f"<figure class=\"card\" id=\"{e(chart['name'])}\">"
            f"<img src=\"{data_uri(chart['png'])}\" alt=\"{e(chart['title'])}\">"
            f"<figcaption>{e(chart['caption'])}</figcaption></figure>")


def render(report: dict, charts: list[dict], context: dict) -> str:
    """The page. ``charts``: {"name", "title", "caption", "png"} each; ``context``: wall_seconds,
    predicted_rows, expected_rows, mnist_like, notes (plain-text lines)."""
    model = report.get("model") or {}
    status = str(report.get("status", ""))
    badge = f"<span class=\"badge{'' if status == 'SUCCEEDED' else ' bad'}\">{e(status)}</span>"
    subtitle = " · ".join(e(x) for x in (model.get("type"), model.get("engine"),
                                         model.get("algorithm") or (report.get("training") or {}).get("algorithm"),
                                         (report.get("dataset") or {}).get("kind")) if x)
    tile_html = "".join(f"<div class=\"tile\"><div class=\"value\">{value}</div>"
                        f"<div class=\"name\">{e(name)}</div></div>" for value, name in tiles(report))
    notes = "".join(f"<p>{e(note)}</p>" for note in context.get("notes") or [])
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        f"<title>stepml report: {e(report.get('run_id', ''))}</title><style>{CSS}</style></head><body><main>",
        f"<header class=\"top\"><div class=\"eyebrow\">stepml evaluation report</div>"
        f"<h1>{e(report.get('run_id', ''))}{badge}</h1><p class=\"sub\">{subtitle}</p></header>",
        f"<section class=\"tiles\">{tile_html}</section>",
        comparison_2016(report, context.get("wall_seconds")) if context.get("mnist_like") else "",
        f"<section class=\"notes\">{notes}</section>" if notes else "",
        f"<section class=\"grid2\">{run_table(report, context)}{cost_table(report.get('cost'))}</section>",
        "".join(figure(chart) for chart in charts),
        "<footer>report.json beside this page is its machine-readable twin; the charts are also "
        "there as PNG files. Generated by stepml "
        f"{e(report.get('code_version', ''))}.</footer></main></body></html>\n",
    ])
