"""The CSV tables of results/tables/: the metrics.json result beside the paper's numbers (pure, no I/O).

Every metric column ``<key>`` comes with its bootstrap standard error ``<key>_se`` and 95 % interval
``<key>_ci95_lo``, ``<key>_ci95_hi`` (appended after the paper's columns); ``significance.csv`` has the
``resolved`` verdict of the paired bootstrap test.
"""

from __future__ import annotations

import pandas as pd

from morphomass.evaluate.metrics import METRIC_KEYS
from morphomass.evaluate.paper import PAPER_METRICS, PAPER_PER_CLASS, TABLE1_ROWS
from morphomass.metrics_schema import ExperimentMetrics, MetricsFile

__all__ = ["LOSS_METHODS", "make_tables"]

#: Methods of Table B.1 (each trained for L1~, L2~ and RMSLE).
LOSS_METHODS: tuple[str, ...] = ("g_morph", "gi_powerlaw", "gi_morph")
_LOSS_METRICS: tuple[str, ...] = ("l1", "l2", "rmsle", "median_l1")


def _uncertainty(m: ExperimentMetrics, keys: tuple[str, ...]) -> dict[str, float | None]:
    """Return the columns ``<key>_se``, ``<key>_ci95_lo`` and ``<key>_ci95_hi`` of one experiment."""
    columns: dict[str, float | None] = {}
    for k in keys:
        ci = getattr(m.ci95, k)
        columns[f"{k}_se"] = getattr(m.se, k)
        columns[f"{k}_ci95_lo"] = ci[0] if ci is not None else None
        columns[f"{k}_ci95_hi"] = ci[1] if ci is not None else None
    return columns


def _experiments_table(results: MetricsFile) -> pd.DataFrame:
    rows = []
    for name, m in results.experiments.items():
        paper = PAPER_METRICS.get(name, {})
        rows.append(
            {
                "experiment": name,
                **{k: getattr(m, k) for k in METRIC_KEYS},
                "n_test": m.n_test,
                "n_features": m.n_features,
                **{f"paper_{k}": paper.get(k) for k in METRIC_KEYS},
                **_uncertainty(m, METRIC_KEYS),
            }
        )
    return pd.DataFrame(rows)


def _table1(results: MetricsFile) -> pd.DataFrame:
    experiments = results.experiments
    return pd.DataFrame(
        [
            {
                "experiment": n,
                "cnn123": f[0],
                "cnn4": f[1],
                "luminosity": f[2],
                "distance": f[3],
                "classical": f[4],
                "l1": experiments[n].l1,
                "paper_l1": PAPER_METRICS.get(n, {}).get("l1"),
                **_uncertainty(experiments[n], ("l1",)),
            }
            for n, f in TABLE1_ROWS.items()
            if n in experiments
        ]
    )


def _table_b1(results: MetricsFile) -> pd.DataFrame:
    rows = []
    for method in LOSS_METHODS:
        for loss in ("l1", "l2", "rmsle"):
            name = f"loss_{method}_{loss}"
            if name in results.experiments:
                paper = PAPER_METRICS.get(name, {})
                rows.append(
                    {
                        "method": method,
                        "optimised_loss": loss,
                        **{k: getattr(results.experiments[name], k) for k in _LOSS_METRICS},
                        **{f"paper_{k}": paper.get(k) for k in _LOSS_METRICS},
                        **_uncertainty(results.experiments[name], _LOSS_METRICS),
                    }
                )
    return pd.DataFrame(rows)


def make_tables(results: MetricsFile, class_counts: dict[str, int]) -> dict[str, pd.DataFrame]:
    """Build every table of results/tables/, keyed by file name.

    Parameters
    ----------
    results : MetricsFile
        The evaluate stage's result.
    class_counts : dict of str to int
        Test galaxies per E9 class.

    Returns
    -------
    dict of str to DataFrame
        ``experiments.csv``, ``table1_ablations.csv``, ``tableB1_losses.csv``, ``per_class.csv``,
        ``significance.csv`` and one ``importance_<experiment>.csv`` per entry of ``results.importance``.
    """
    tables = {
        "experiments.csv": _experiments_table(results),
        "table1_ablations.csv": _table1(results),
        "tableB1_losses.csv": _table_b1(results),
    }
    tables["per_class.csv"] = pd.DataFrame(
        [
            {
                "class": c,
                "n_test": class_counts.get(c, 0),
                "gi_gbm": v.get("gi_gbm"),
                "gi_morph": v.get("gi_morph"),
                "paper_gi_gbm": PAPER_PER_CLASS[c][0],
                "paper_gi_morph": PAPER_PER_CLASS[c][1],
            }
            for c, v in results.per_class.items()
        ]
    )
    tables["significance.csv"] = pd.DataFrame(
        [
            {
                "comparison": k,
                "ks_pvalue": v.ks_pvalue,
                **{f"bootstrap_{n}_mean": b[0] for n, b in v.bootstrap_mean_l1.items()},
                **{f"bootstrap_{n}_std": b[1] for n, b in v.bootstrap_mean_l1.items()},
                "paired_bootstrap_pvalue": v.paired_bootstrap_pvalue,
                "resolved": v.resolved,
            }
            for k, v in results.significance.items()
        ]
    )
    for name, rows in results.importance.items():
        tables[f"importance_{name}.csv"] = pd.DataFrame([r.model_dump() for r in rows])
    return tables
