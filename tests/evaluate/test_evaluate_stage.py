"""The evaluate stage: results/metrics.json against the DESIGN §4 contract, figures, tables, the report.

One module-level work directory holds a small synthetic sample with its feature tables and the real train-gbm
output (tiny preset); the stage-logic tests build their own models/gbm/ with known predictions.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from factories.gbm_tables import make_synthetic_tables
from morphomass.config import PipelineConfig, load_config
from morphomass.errors import ConfigError, InputDataError
from morphomass.evaluate import run_evaluate
from morphomass.evaluate.baselines import fit_constant
from morphomass.evaluate.metrics import METRIC_KEYS, compute_metrics
from morphomass.gbm import run_train_gbm
from morphomass.metrics_schema import read_metrics
from morphomass.workdir import WorkDir, write_json_atomic

EXPERIMENT_NAME = re.compile(
    r"^(constant|reference_lg_z|g_morph|ablation_no_(cnn4|cnn123|luminosity|distance|cnn)|g_morph_(top50|half_train|"
    r"no_total_luminosity|gz2_truth|classical)|gi_(powerlaw|zibetti09|gbm|morph|classical|morph_classical)|"
    r"g_classical|bands_[ugriz]+(_morph)?|"
    r"loss_(g_morph|gi_powerlaw|gi_morph)_(l1|l2|rmsle))$"
)
FIGURES = (
    "fig2_ml_histograms",
    "fig4_pred_vs_true",
    "fig5_importance",
    "fig6_features",
    "fig7_colour",
    "fig8_bands",
    "fig_intervals_reliability",
    "fig_intervals_width",
)


def _config(**evaluate: object) -> PipelineConfig:
    return load_config(
        "tiny",
        overrides={
            "gbm": {"num_threads": 1, "band_sequence": ["g", "gi"]},
            "evaluate": {"figure_dpi": 40, **evaluate},
        },
    )


def _write_tables(root, n: int = 500) -> tuple[WorkDir, pd.DataFrame]:
    wd = WorkDir(root).ensure()
    sample, phot, cnn = make_synthetic_tables(n, rng=np.random.default_rng(5), n_trunk=12)
    sample.to_parquet(wd.sample)
    phot.to_parquet(wd.features / "photometric.parquet")
    cnn.to_parquet(wd.features / "cnn.parquet")
    return wd, sample


@pytest.fixture(name="evaluated", scope="module")
def fixture_evaluated(tmp_path_factory):
    wd, sample = _write_tables(tmp_path_factory.mktemp("evaluate"))
    pd.DataFrame({"target": [0.05, 30.0, 2.0]}).to_parquet(wd.tables / "sample_chi2_rejected.parquet")
    run_train_gbm(_config(), wd, progress=False)
    result = run_evaluate(_config(), wd, progress=False)
    return wd, sample, result


def test_metrics_json_follows_the_contract(evaluated) -> None:
    wd, sample, _ = evaluated
    metrics = read_metrics(wd.metrics)
    assert metrics.preset == "tiny"
    assert metrics.n == {s: int((sample["split"] == s).sum()) for s in ("train", "val", "test")}
    assert all(EXPERIMENT_NAME.match(name) for name in metrics.experiments)
    expected = {
        "constant",
        "reference_lg_z",
        "g_morph",
        "ablation_no_cnn4",
        "ablation_no_cnn123",
        "ablation_no_luminosity",
        "ablation_no_distance",
        "ablation_no_cnn",
        "g_morph_top50",
        "g_morph_half_train",
        "g_morph_no_total_luminosity",
        "g_morph_gz2_truth",
        "gi_powerlaw",
        "gi_zibetti09",
        "gi_gbm",
        "gi_morph",
        "g_classical",
        "g_morph_classical",
        "gi_classical",
        "gi_morph_classical",
        "bands_g",
        "bands_g_morph",
        "bands_gi",
        "bands_gi_morph",
        *(f"loss_{m}_{k}" for m in ("g_morph", "gi_powerlaw", "gi_morph") for k in ("l1", "l2", "rmsle")),
    }
    assert set(metrics.experiments) == expected
    assert set(metrics.significance) == {
        "gi_morph_vs_gi_gbm",
        "g_morph_vs_reference_lg_z",
        "gi_gbm_vs_gi_powerlaw",
        "g_morph_vs_ablation_no_cnn",
        "g_classical_vs_reference_lg_z",
        "g_morph_classical_vs_g_morph",
        "gi_morph_classical_vs_gi_gbm",
    }
    for sig in metrics.significance.values():
        assert sig.resolved == (sig.paired_bootstrap_pvalue < 0.01)
    assert set(metrics.per_class) == {"irregular", "edge_on", "disk", "elliptical"}
    assert metrics.importance["g_morph"] and metrics.importance["ablation_no_cnn4"]
    for m in metrics.experiments.values():
        assert m.frac_within_015dex + m.frac_over_015dex + m.frac_under_015dex == pytest.approx(1.0)
        for key in METRIC_KEYS:  # B2: every metric has a bootstrap SE and a 95 % interval around it
            lo, hi = getattr(m.ci95, key)
            assert getattr(m.se, key) >= 0 and lo <= hi
            if key in ("l1", "l2", "rmsle"):
                assert lo < getattr(m, key) < hi
    assert metrics.experiments["loss_g_morph_l1"] == metrics.experiments["g_morph"]
    assert metrics.experiments["constant"].n_features == 0


def test_the_synthetic_universe_rewards_morphology_and_colour(evaluated) -> None:
    """The synthetic M/L depends on luminosity, colour and morphology: the experiments must find it."""
    wd, _, _ = evaluated
    exp = json.loads((wd.results / "metrics.json").read_text())["experiments"]
    assert exp["g_morph"]["l1"] < exp["reference_lg_z"]["l1"] < exp["constant"]["l1"] * 1.05
    assert exp["gi_gbm"]["l1"] < exp["reference_lg_z"]["l1"]
    assert exp["ablation_no_cnn"]["l1"] > exp["g_morph"]["l1"]
    sig = json.loads((wd.results / "metrics.json").read_text())["significance"]["g_morph_vs_reference_lg_z"]
    assert sig["ks_pvalue"] < 0.01
    assert sig["paired_bootstrap_pvalue"] < 0.01 and sig["resolved"] is True
    assert sig["bootstrap_mean_l1"]["g_morph"][0] == pytest.approx(exp["g_morph"]["l1"], rel=0.05)


def test_figures_tables_and_outputs(evaluated) -> None:
    wd, _, result = evaluated
    for stem in FIGURES:
        for ext in ("png", "pdf"):
            path = wd.figures / f"{stem}.{ext}"
            assert path.stat().st_size > 1000
            assert f"results/figures/{stem}.{ext}" in result.outputs
    assert (wd.figures / "fig4_pred_vs_true.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (wd.figures / "fig4_pred_vs_true.pdf").read_bytes()[:5] == b"%PDF-"
    table1 = pd.read_csv(wd.tables / "table1_ablations.csv")
    assert list(table1["experiment"]) == [
        "g_morph",
        "ablation_no_cnn123",
        "ablation_no_cnn4",
        "ablation_no_luminosity",
        "ablation_no_distance",
        "ablation_no_cnn",
        "g_morph_classical",
        "g_classical",
    ]
    assert table1["paper_l1"].iloc[:6].tolist() == [2.29, 2.37, 2.41, 2.32, 2.67, 3.38]
    assert table1["paper_l1"].iloc[6:].isna().all()  # beyond the paper
    assert table1["classical"].tolist() == [False] * 6 + [True, True]
    b1 = pd.read_csv(wd.tables / "tableB1_losses.csv")
    assert len(b1) == 9 and set(b1["optimised_loss"]) == {"l1", "l2", "rmsle"}
    assert {"results/metrics.json", "results/report.html"} <= set(result.outputs)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("img", "script", "iframe") and values.get("src"):
            self.sources.append(values["src"] or "")
        if tag == "link" and values.get("href"):
            self.links.append(values["href"] or "")


def test_report_is_self_contained(evaluated) -> None:
    wd, _, _ = evaluated
    text = (wd.results / "report.html").read_text(encoding="utf-8")
    parser = _Collector()
    parser.feed(text)
    assert len(parser.sources) == len(FIGURES)
    assert all(src.startswith("data:image/png;base64,") for src in parser.sources)
    assert not parser.links
    assert not re.search(r"(src|href)\s*=\s*[\"']?https?:", text)  # (URLs inside the config text are fine)
    assert "url(" not in text and "@import" not in text
    assert "Findings checked against the paper" in text and "2.29" in text and "Table B.1" in text
    findings = text[text.index("Findings checked against the paper") : text.index("<h2>Sample")]
    assert "paired bootstrap p (one-sided)" in findings and " ± " in findings
    assert ">resolved<" in findings  # g_morph vs reference_lg_z (p < 0.01 above)


# ------------------------------------------------------------------ stage logic with known predictions


def _fake_gbm(wd: WorkDir, sample: pd.DataFrame, factors: dict[str, float]) -> None:
    """models/gbm/ as train-gbm writes it, with predictions = factor x true M/L."""
    gbm_dir = wd.models / "gbm"
    gbm_dir.mkdir(parents=True, exist_ok=True)
    preds = sample[["objid", "split"]].copy()
    for name, factor in factors.items():
        preds[f"pred_{name}"] = sample["ml"].to_numpy() * factor
        write_json_atomic(gbm_dir / f"{name}.json", {"n_features": 7, "cpu_seconds": 0.1})
    preds.to_parquet(gbm_dir / "predictions.parquet")


def test_metrics_are_computed_on_the_test_split(tmp_path) -> None:
    wd, sample = _write_tables(tmp_path, n=120)
    sample.loc[sample.index[sample["split"] == "test"][0], "flux_i"] = -1.0  # no colour for one test galaxy
    sample.to_parquet(wd.sample)
    _fake_gbm(wd, sample, {"g_morph": 1.2, "reference_lg_z": 0.7})
    run_evaluate(_config(experiments=["g_morph", "constant", "gi_powerlaw"]), wd, progress=False)
    metrics = json.loads((wd.results / "metrics.json").read_text())
    assert set(metrics["experiments"]) == {"g_morph", "constant", "gi_powerlaw"}
    test = sample[sample["split"] == "test"]
    expected = compute_metrics(1.2 * test["ml"], test["ml"], test["ml_err"])
    g_morph = metrics["experiments"]["g_morph"]
    assert {k: v for k, v in g_morph.items() if k not in ("se", "ci95")} == pytest.approx(
        {**expected, "n_test": len(test), "n_features": 7}
    )
    assert g_morph["ci95"]["l1"][0] < expected["l1"] < g_morph["ci95"]["l1"][1]
    train = sample[sample["split"] == "train"]
    constant = fit_constant(train["ml"], train["ml_err"])
    assert metrics["experiments"]["constant"]["l1"] == pytest.approx(
        compute_metrics(np.full(len(test), constant), test["ml"], test["ml_err"])["l1"]
    )
    assert metrics["experiments"]["gi_powerlaw"]["n_test"] == len(test) - 1
    assert metrics["experiments"]["gi_powerlaw"]["se"]["l1"] > 0
    assert metrics["significance"] == {} and metrics["per_class"]["disk"] == {}
    assert (wd.figures / "fig2_ml_histograms.png").exists()
    assert "chi2_r &gt;= 5 histogram" in (wd.results / "report.html").read_text()  # noted as missing


def test_bad_requests_and_inputs(tmp_path) -> None:
    wd, sample = _write_tables(tmp_path, n=60)
    with pytest.raises(InputDataError, match="predictions.parquet does not exist"):
        run_evaluate(_config(), wd, progress=False)
    _fake_gbm(wd, sample, {"g_morph": 1.0})
    with pytest.raises(ConfigError, match=r"unknown or unavailable experiments \['gi_morph'\]"):
        run_evaluate(_config(experiments=["gi_morph"]), wd, progress=False)
    sample.iloc[1:].to_parquet(wd.sample)
    with pytest.raises(InputDataError, match="1 galaxies of models/gbm/predictions.parquet .* are not in"):
        run_evaluate(_config(), wd, progress=False)
    sample.assign(split="train").to_parquet(wd.sample)
    with pytest.raises(InputDataError, match="split of .* galaxies differs"):
        run_evaluate(_config(), wd, progress=False)


def test_dead_cnn1_outputs_read_as_zero(tmp_path) -> None:
    """The extract stage drops CNN1 outputs that are zero for every training galaxy; E9 reads them as 0."""
    wd, sample = _write_tables(tmp_path, n=120)
    cnn = pd.read_parquet(wd.features / "cnn.parquet")
    cnn.drop(columns=["cnn1_p_t01_a02", "cnn1_p_t02_a04"]).to_parquet(wd.features / "cnn.parquet")
    _fake_gbm(wd, sample, {"gi_gbm": 1.1, "gi_morph": 0.95})
    run_evaluate(_config(), wd, progress=False)
    metrics = json.loads((wd.results / "metrics.json").read_text())
    counts = pd.read_csv(wd.tables / "per_class.csv").set_index("class")["n_test"]
    p_irr = cnn.set_index("objid").loc[sample.loc[sample["split"] == "test", "objid"], "cnn1_p_t08_a22"]
    assert counts["irregular"] == int((p_irr > 0.2).sum())
    assert counts["disk"] == 0 and counts["edge_on"] == 0
    assert counts["elliptical"] == len(p_irr) - counts["irregular"]
    assert metrics["per_class"]["disk"] == {"gi_gbm": None, "gi_morph": None}
    assert metrics["per_class"]["elliptical"]["gi_morph"] < metrics["per_class"]["elliptical"]["gi_gbm"]
    assert "dropped upstream as zero for every training galaxy" in (wd.results / "report.html").read_text()


def test_the_prediction_intervals_are_audited_on_the_test_split(evaluated) -> None:
    wd, _, result = evaluated
    metrics = read_metrics(wd.metrics)
    n_test = metrics.n["test"]
    assert set(metrics.uncertainty) == {"g_morph", "gi_morph"}
    for u in metrics.uncertainty.values():
        assert [o.level for o in u.overall] == [0.68, 0.95]
        assert all(o.n == n_test and 0 <= o.n_covered <= n_test for o in u.overall)
        assert u.overall[0].coverage <= u.overall[1].coverage  # nested intervals
        assert u.overall[0].median_width_dex < u.overall[1].median_width_dex
        assert all(o.ci95[0] <= o.coverage <= o.ci95[1] for o in u.overall)
        # the reliability curve covers every calibrated level, increasingly
        levels = [r.level for r in u.reliability]
        assert levels == sorted(levels) and {0.05, 0.5, 0.95} <= set(levels)
        assert sum(r.n for r in u.per_z_tercile if r.level == 0.68) == n_test
        assert sum(r.n for r in u.per_target_tercile if r.level == 0.95) == n_test
    report = wd.report.read_text()
    assert "Prediction intervals (calibrated uncertainty)" in report
