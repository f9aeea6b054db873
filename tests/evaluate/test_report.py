"""The HTML report renderer: formatting, inlined figures, escaping."""

from __future__ import annotations

import base64

import numpy as np

from morphomass.evaluate.report import fmt, png_data_uri, render_report


def _context(**over: object) -> dict:
    context = {
        "preset": "tiny",
        "target": {"name": "ml_g", "kind": "ratio", "description": "M/L", "unit": "M_sun/L_sun"},
        "version": "0",
        "generated": "now",
        "notes": ["a <note>"],
        "checks": [],
        "sample_rows": [("galaxies", "10")],
        "metric_names": ["l1"],
        "experiment_rows": [],
        "table1": [],
        "uncertainty": [],
        "significance": [],
        "per_class": [],
        "table_b1": [],
        "timings": [],
        "config_text": "{}",
    }
    context.update(over)
    return context


def test_fmt() -> None:
    assert fmt(None) == "-" and fmt(float("nan")) == "-"
    assert fmt(3) == "3" and fmt(np.int64(4)) == "4"
    assert fmt(2.29) == "2.290" and fmt(2.29, 2) == "2.29"
    assert fmt(7.6e-9) == "7.6e-09"
    assert fmt(0.0) == "0.000"


def test_figures_are_inlined_and_text_is_escaped() -> None:
    png = b"\x89PNG\r\n\x1a\nfake"
    html = render_report(_context(), {"fig2_ml_histograms": (png, "M/L <per> split")})
    assert f'src="{png_data_uri(png)}"' in html
    assert base64.b64decode(png_data_uri(png).split(",", 1)[1]) == png
    assert "M/L &lt;per&gt; split" in html and "a &lt;note&gt;" in html
    assert "fig4_pred_vs_true: not drawn in this run." in html
