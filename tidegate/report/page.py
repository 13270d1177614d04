"""One self-contained HTML page: summary, charts (PNG as data: URIs), gate table, decision log.

Self-contained because the page is meant to be attached to a change ticket: no
external CSS, fonts, scripts or image files, so it renders the same from an
email attachment, a ticket system's preview or a headless browser.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping

from tidegate.report.charts import CHARTS
from tidegate.report.model import ReportData

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1180px;color:#212121}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0} td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top} th{background:#f5f5f5} figure{margin:12px 0} img{max-width:100%}
figcaption{font-size:12px;color:#555} .PASS{color:#2e7d32}.FAIL{color:#c62828;font-weight:bold}
.INSUFFICIENT{color:#757575}.UNAVAILABLE{color:#ef6c00} .phase{font-weight:bold}
.RolledBack,.Failed{color:#c62828}.Promoted{color:#2e7d32} .note{background:#fff8e1;padding:6px 10px}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return _e(value)


def render_html(data: ReportData, images: Mapping[str, bytes]) -> str:
    """The page; ``images`` maps each chart key of CHARTS to its PNG bytes."""
    started = data.started_at.isoformat(timespec="seconds") if data.started_at else "—"
    finished = data.finished_at.isoformat(timespec="seconds") if data.finished_at else "—"
    summary = [("release", data.name), ("candidate model", data.model_id),
               ("rollback target (previous model)", data.previous_model_id or "—"),
               ("stage / weight", f"{data.stage or '—'} / {data.weight}%"),
               ("started", started), ("finished", finished),
               ("rollback reason", data.rollback_reason or "—"), ("last message", data.message or "—"),
               ("data sources", f"gates: {', '.join(sorted({t.source for t in data.gates})) or '—'}; "
                                f"win rate: {data.winrate_source}; scores: {data.scores_source}")]
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>tidegate release report: {_e(data.name)}</title>", f"<style>{_CSS}</style></head><body>",
           f'<h1>Release {_e(data.name)}: <span class="phase {_e(data.phase)}" id="phase">{_e(data.phase)}</span>'
           "</h1>",
           f"<p>Generated {_e(data.generated_at.isoformat(timespec='seconds'))} by <code>tidegate release report"
           f"</code>.</p>", '<table id="summary">']
    out += [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in summary]
    out.append("</table>")
    out += [f'<p class="note">{_e(n)}</p>' for n in data.notes]

    for key, title, _fn in CHARTS:
        png = images[key]
        b64 = base64.b64encode(png).decode("ascii")
        out += [f"<h2>{_e(title)}</h2>", f'<figure id="fig-{key}">',
                f'<img class="chart" data-chart="{key}" alt="{_e(title)}" src="data:image/png;base64,{b64}">',
                f"<figcaption>{_e(_caption(key, data))}</figcaption></figure>"]

    out += ["<h2>Gates at the end</h2>", '<table id="gates"><tr><th>gate</th><th>verdict</th><th>value</th>'
            "<th>threshold</th><th>sample</th><th>at</th></tr>"]
    for gate, g in data.gate_status.items():
        verdict = str(g.get("verdict", ""))
        out.append(f'<tr><td>{_e(gate)}</td><td class="{_e(verdict)}">{_e(verdict)}</td>'
                   f"<td>{_num(g.get('value'))}</td><td>{_num(g.get('threshold'))}</td>"
                   f"<td>{_num(g.get('sample'))}</td><td>{_e(g.get('at'))}</td></tr>")
    out.append("</table>")

    out += [f"<h2>Decision log ({len(data.marks)} rows)</h2>",
            '<table id="decisions"><tr><th>at</th><th>stage</th><th>action</th><th>gate</th><th>verdict</th>'
            "<th>value</th><th>threshold</th><th>sample</th><th>reason</th></tr>"]
    for m in data.marks:
        out.append(f"<tr><td>{_e(m.at.isoformat(timespec='milliseconds'))}</td><td>{_e(m.stage)}</td>"
                   f"<td>{_e(m.action)}</td><td>{_e(m.gate)}</td><td class=\"{_e(m.verdict)}\">{_e(m.verdict)}</td>"
                   f"<td>{_num(m.value)}</td><td>{_num(m.threshold)}</td><td>{_num(m.sample)}</td>"
                   f"<td>{_e(m.reason)}</td></tr>")
    out += ["</table>", "</body></html>"]
    return "\n".join(out) + "\n"


def _caption(key: str, data: ReportData) -> str:
    if key == "timeline":
        return ("Canary weight per stage; vertical lines are decisions (green: advance/promote, red: rollback, "
                "orange: hold/pause, blue: resume/retry).")
    if key == "winrate":
        return (f"winrate_rolling by route against winrate_baseline_active; the band is the tolerance "
                f"(baseline - {data.winrate_delta_pp:g} percentage points). Source: {data.winrate_source}.")
    if key == "gates":
        return ("Each gate's value (solid) against its threshold (dashed), with the verdicts logged when they "
                "changed (PASS circle, FAIL cross, INSUFFICIENT triangle, UNAVAILABLE square).")
    return (f"ai_scorer's online score distribution of the deciding (active) model and the shadow (candidate) "
            f"model. Source: {data.scores_source}.")
