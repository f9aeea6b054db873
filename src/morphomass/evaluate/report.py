"""The self-contained HTML report (results/report.html): tables beside the paper's numbers, figures inlined.

Figures are embedded as base64 PNG ``data:`` URIs and the page has no external stylesheet, script or font, so
it renders offline. :func:`render_report` is pure (a context in, an HTML string out).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping
from typing import Any

import jinja2
from markupsafe import Markup

__all__ = ["fmt", "png_data_uri", "render_report"]

_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>morphomass report ({{ preset }})</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222;
       line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
td.ok { background: #e6f4e6; } td.bad { background: #fbe3e3; }
.paper { color: #666; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .9em; color: #444; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .85em; }
.note { background: #fff8e1; border-left: 4px solid #f0c040; padding: .5em 1em; }
</style></head><body>
<h1>morphomass: morphology-assisted M/L &mdash; reproduction of Dobbels et al. 2019</h1>
<p>Preset <b>{{ preset }}</b>, morphomass {{ version }}, generated {{ generated }}.
Target: <b>{{ target.name }}</b>, {{ target.description }} ({{ target.unit }})
{%- if target.kind == "difference" %}; already in dex, so the dex metrics (RMSLE, within/over/under
0.15 dex) are on pred &minus; true and L1~ uses its error in dex; the paper's values are for M/L and do
not compare{% endif %}.
Test-set metrics; paper values (A&amp;A 624, A102) in grey. L1~ = mean |pred &minus; true| / err.
Every number carries &plusmn; its bootstrap standard error (resampling the test galaxies, the same
resamples for every experiment); the 95 % percentile interval is below it. A comparison is <i>resolved</i>
when the one-sided paired bootstrap p (both models on the same resampled galaxies) is below 0.01.</p>
{% if notes %}<div class="note"><ul>{% for n in notes %}<li>{{ n }}</li>{% endfor %}</ul></div>{% endif %}

<h2>Findings checked against the paper</h2>
<table><tr><th>claim</th><th>this run (L1~ &plusmn; SE)</th><th>KS p (one-sided)</th>
<th>paired bootstrap p (one-sided)</th><th>paper</th><th>holds here</th><th>verdict</th></tr>
{% for c in checks %}<tr><td>{{ c.claim }}</td><td>{{ c.ours }}</td><td>{{ c.ks }}</td><td>{{ c.paired }}</td>
<td class="paper">{{ c.paper }}</td>
<td class="{{ 'ok' if c.holds else 'bad' }}">{{ 'yes' if c.holds else 'no' }}</td>
<td class="{{ 'ok' if c.resolved else 'bad' }}">{{ c.verdict }}</td></tr>{% endfor %}
</table>

<h2>Sample</h2>
<table><tr><th>quantity</th><th>value</th></tr>
{% for k, v in sample_rows %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</table>
{{ figure("fig2_ml_histograms") }}

<h2>All experiments</h2>
<table><tr><th>experiment</th>{% for m in metric_names %}<th>{{ m }}</th>{% endfor %}<th>n test</th>
<th>features</th></tr>
{% for row in experiment_rows %}<tr><td>{{ row.name }}</td>
{% for cell in row.cells %}<td>{{ cell.ours }}{% if cell.paper %}
<span class="paper">({{ cell.paper }})</span>{% endif %}{% if cell.ci95 %}<br><small>{{ cell.ci95 }}</small>
{% endif %}</td>{% endfor %}
<td>{{ row.n_test }}</td><td>{{ row.n_features }}</td></tr>{% endfor %}
</table>

<h2>Single band: reference vs g-band morphology (Fig. 4)</h2>
{{ figure("fig4_pred_vs_true") }}

<h2>Table 1: ablations</h2>
<table><tr><th>experiment</th><th>CNN 1-3</th><th>CNN 4</th><th>luminosity</th><th>distance</th>
<th>classical</th><th>test L1~ &plusmn; SE</th><th>95 % interval</th><th>paper</th></tr>
{% for r in table1 %}<tr><td>{{ r.name }}</td>
{% for f in r.flags %}<td>{{ 'X' if f else '' }}</td>{% endfor %}
<td>{{ r.ours }}</td><td>{{ r.ci95 }}</td><td class="paper">{{ r.paper }}</td></tr>{% endfor %}</table>

<h2>Feature importance (Fig. 5) and the features behind M/L (Fig. 6)</h2>
{{ figure("fig5_importance") }}
{{ figure("fig6_features") }}

<h2>Colour and morphology (Fig. 7, E8, E9)</h2>
{{ figure("fig7_colour") }}
<table><tr><th>comparison</th><th>KS p (one-sided)</th><th>bootstrap mean L1~ &plusmn; std</th>
<th>paired bootstrap p (one-sided)</th><th>verdict</th><th>paper</th></tr>
{% for s in significance %}<tr><td>{{ s.name }}</td><td>{{ s.ks }}</td><td>{{ s.boot }}</td>
<td>{{ s.paired }}</td><td class="{{ 'ok' if s.resolved else 'bad' }}">{{ s.verdict }}</td>
<td class="paper">{{ s.paper }}</td></tr>{% endfor %}</table>
<table><tr><th>class (CNN1)</th><th>test galaxies</th><th>gi_gbm</th><th>gi_morph</th><th>paper</th></tr>
{% for r in per_class %}<tr><td>{{ r.name }}</td><td>{{ r.n }}</td><td>{{ r.without }}</td>
<td>{{ r.with }}</td>
<td class="paper">{{ r.paper }}</td></tr>{% endfor %}</table>

<h2>Band sequence (Fig. 8)</h2>
{{ figure("fig8_bands") }}

{% if uncertainty %}<h2>Prediction intervals (calibrated uncertainty)</h2>
<p>Intervals on {{ "log10 M/L" if target.kind == "ratio" else target.name }}, calibrated on the training split
by normalised cross-conformal prediction (each
training galaxy's out-of-fold error, scaled by a model of the spread); the test galaxies audit them. Offset:
(coverage - nominal) in standard errors of an exactly calibrated method (test binomial and calibration size);
width: median (16th-84th percentile) of hi - lo in dex; joint: one test over the E9 classes with at least 50
test galaxies (Bonferroni); worst: the lowest coverage among classes and redshift and target terciles. The
intervals cover the catalogue's SED-fitted {{ target.name }}, which carries its own error.</p>
<table><tr><th>model</th><th>nominal</th><th>coverage [95 %]</th><th>test galaxies</th><th>offset (SE)</th>
<th>p</th><th>verdict</th><th>width (dex)</th><th>joint per-class p</th><th>worst group</th>
<th>calibration galaxies</th></tr>
{% for r in uncertainty %}<tr><td>{{ r.model }}</td><td>{{ r.level }}</td><td>{{ r.coverage }}</td>
<td>{{ r.n }}</td><td>{{ r.offset }}</td><td>{{ r.pvalue }}</td><td>{{ r.verdict }}</td><td>{{ r.width }}</td>
<td>{{ r.joint }}</td><td>{{ r.worst }}</td><td>{{ r.n_calibration }}</td></tr>{% endfor %}</table>
{{ figure("fig_intervals_reliability") }}
{{ figure("fig_intervals_width") }}
{% endif %}

<h2>Table B.1: loss functions</h2>
<table><tr><th>method</th><th>optimised</th><th>L1~ &plusmn; SE</th><th>L2~ &plusmn; SE</th>
<th>RMSLE &plusmn; SE</th><th>median L1~ &plusmn; SE</th></tr>
{% for r in table_b1 %}<tr><td>{{ r.method }}</td><td>{{ r.loss }}</td>
{% for cell in r.cells %}<td>{{ cell.ours }} <span class="paper">({{ cell.paper }})</span></td>
{% endfor %}</tr>
{% endfor %}</table>

<h2>Timings</h2>
<table><tr><th>step</th><th>seconds</th></tr>
{% for k, v in timings %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</table>

<h2>Configuration</h2>
<pre>{{ config_text }}</pre>
</body></html>
"""


def fmt(value: Any, digits: int = 3) -> str:
    """Format a value for the tables ('-' for None/NaN; small numbers such as p-values as 1.2e-05)."""
    if value is None:
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value != 0 and abs(value) < 10 ** (-digits):
            return f"{value:.2g}"
        return f"{value:.{digits}f}"
    return str(value)


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for an <img> tag."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_report(context: Mapping[str, Any], figures: Mapping[str, tuple[bytes, str]]) -> str:
    """Render the report.

    Parameters
    ----------
    context : mapping
        Template variables: ``preset``, ``target`` (the fields of :class:`morphomass.targets.Target`),
        ``version``, ``generated``, ``notes``, ``checks``, ``sample_rows``,
        ``metric_names``, ``experiment_rows``, ``table1``, ``significance``, ``per_class``, ``uncertainty``,
        ``table_b1``, ``timings``, ``config_text``.
    figures : mapping of name to (PNG bytes, caption)
        Inlined where the template names them; a missing figure is shown as a one-line note.

    Returns
    -------
    str
        The HTML page.
    """
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)

    def figure(name: str) -> Markup:
        if name not in figures:
            return Markup(f"<p><i>{html.escape(name)}: not drawn in this run.</i></p>")
        png, caption = figures[name]
        return Markup(
            f'<figure><img alt="{html.escape(name)}" src="{png_data_uri(png)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    template = env.from_string(_TEMPLATE)
    return template.render(figure=figure, **context)
