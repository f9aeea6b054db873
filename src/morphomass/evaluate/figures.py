"""The paper's figures (Dobbels+19 Figs. 2, 4-8) as functions of arrays that return matplotlib Figures.

No pyplot state is used (each function builds a :class:`matplotlib.figure.Figure`), so figures can be made in
any thread and without a display. M/L is in solar units; "dex error" is log10(pred / true).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from morphomass.evaluate.metrics import dex_error

__all__ = [
    "plot_band_sequence",
    "plot_interval_reliability",
    "plot_interval_width_vs_error",
    "plot_colour_methods",
    "plot_feature_relations",
    "plot_importances",
    "plot_ml_histograms",
    "plot_pred_vs_true",
]

CLASS_COLOURS = {
    "elliptical": "tab:red",
    "disk": "tab:blue",
    "edge_on": "tab:orange",
    "irregular": "tab:green",
}
NO_MORPH, MORPH = "#8e5ea2", "#3cba54"


#: Symbol of the paper's target on the figures.
ML_SYMBOL = "M/L$_g$"
#: x label of the dex-error histograms: ratio target, target in dex.
_DEX_LABEL = {False: "dex error log$_{10}$(pred / true)", True: "dex error (pred - true)"}


def _density(x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    """2-D Gaussian KDE at each point (the paper's point colouring).

    Degenerate point sets (fewer than 3 points, or all on one line, where the KDE's covariance is singular)
    are coloured by the count in their cell of a 2-D histogram instead.
    """
    xy = np.vstack([x, y])
    if x.size >= 3:
        try:
            return stats.gaussian_kde(xy)(xy)
        except np.linalg.LinAlgError:
            pass
    counts, ex, ey = np.histogram2d(x, y, bins=20)
    ix = np.clip(np.searchsorted(ex, x, side="right") - 1, 0, counts.shape[0] - 1)
    iy = np.clip(np.searchsorted(ey, y, side="right") - 1, 0, counts.shape[1] - 1)
    return counts[ix, iy]


def _linear(values: ArrayLike, in_dex: bool) -> NDArray[np.float64]:
    """Values on the figures' log axes: as they are, or ``10**values`` for a target already in dex."""
    v = np.asarray(values, dtype=np.float64)
    return 10.0**v if in_dex else v


def _scatter_pred_true(
    ax: Axes,
    pred: NDArray[np.float64],
    true: NDArray[np.float64],
    title: str,
    lim: tuple[float, float],
    symbol: str = ML_SYMBOL,
) -> None:
    dens = _density(np.log10(true), np.log10(pred))
    order = np.argsort(dens)
    ax.scatter(true[order], pred[order], c=dens[order], s=4, cmap="viridis", rasterized=True)
    ax.plot(lim, lim, color="k", lw=0.8)
    ax.set(
        xscale="log",
        yscale="log",
        xlim=lim,
        ylim=lim,
        xlabel=f"true {symbol}",
        ylabel=f"predicted {symbol}",
        title=title,
    )
    _plain_log_ticks(ax.xaxis)
    _plain_log_ticks(ax.yaxis)


def _plain_log_ticks(axis: Any) -> None:
    """Label a log axis with plain numbers at 1, 2, 5 x 10^k (no overlapping minor labels)."""
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _limits(*arrays: NDArray[np.float64]) -> tuple[float, float]:
    values = np.concatenate([a[np.isfinite(a) & (a > 0)] for a in arrays])
    return float(values.min() / 1.3), float(values.max() * 1.3)


def plot_ml_histograms(
    ml_by_group: Mapping[str, ArrayLike], *, bins: int = 40, in_dex: bool = False, symbol: str = ML_SYMBOL
) -> Figure:
    """Fig. 2: M/L (or the target's) histograms per split, and of the chi2_r >= 5 galaxies if given.

    Parameters
    ----------
    ml_by_group : mapping of label to (N,) array
        E.g. ``{"train": ..., "val": ..., "test": ..., "chi2_r >= 5": ...}``; log bins, each group shown as
        the fraction of its galaxies per bin (so groups of different sizes compare).
    in_dex, symbol
        The target is already in dex (shown as ``10**value``); its symbol (:mod:`morphomass.targets`).
    """
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    arrays = {k: _linear(v, in_dex) for k, v in ml_by_group.items()}
    arrays = {k: v[np.isfinite(v) & (v > 0)] for k, v in arrays.items()}
    nonempty = [v for v in arrays.values() if v.size]
    if nonempty:
        edges = np.logspace(
            np.log10(min(v.min() for v in nonempty)), np.log10(max(v.max() for v in nonempty)), bins + 1
        )
        for label, values in arrays.items():
            if values.size:
                ax.hist(
                    values,
                    bins=edges,
                    weights=np.full(values.size, 1.0 / values.size),
                    histtype="step",
                    lw=1.5,
                    label=f"{label} ({values.size})",
                )
    ax.set(xscale="log", xlabel=symbol, ylabel="fraction of galaxies per bin")
    _plain_log_ticks(ax.xaxis)
    ax.legend()
    return fig


def plot_pred_vs_true(
    true: ArrayLike,
    err: ArrayLike,
    predictions: Mapping[str, ArrayLike],
    *,
    threshold_dex: float = 0.15,
    in_dex: bool = False,
    symbol: str = ML_SYMBOL,
) -> Figure:
    """Fig. 4: predicted vs true M/L (KDE-coloured) per model, and histograms of dex error and signed L1~.

    Parameters
    ----------
    true, err : (N,) array_like
        True M/L and its uncertainty of the test galaxies.
    predictions : mapping of label to (N,) array
        Two models: the first without morphology, the second with it.
    threshold_dex : float
        Dashed lines at +- this dex error.
    in_dex, symbol
        The target is already in dex (dex error ``pred - true``, shown as ``10**value``); its symbol.
    """
    t = np.asarray(true, dtype=np.float64)
    e = np.asarray(err, dtype=np.float64)
    preds = {k: np.asarray(v, dtype=np.float64) for k, v in predictions.items()}
    fig = Figure(figsize=(10, 8.5), layout="constrained")
    axes = fig.subplots(2, 2)
    lim = _limits(_linear(t, in_dex), *(_linear(p, in_dex) for p in preds.values()))
    colours = [NO_MORPH, MORPH]
    for k, (label, p) in enumerate(preds.items()):
        _scatter_pred_true(axes[k, 0], _linear(p, in_dex), _linear(t, in_dex), label, lim, symbol)
    dex = {k: dex_error(p, t, in_dex=in_dex) for k, p in preds.items()}
    signed = {k: (p - t) / e for k, p in preds.items()}
    span = max(0.6, float(np.nanpercentile(np.abs(np.concatenate(list(dex.values()))), 99)))
    dex_edges = np.linspace(-span, span, 61)
    l1_span = max(3.0, float(np.nanpercentile(np.abs(np.concatenate(list(signed.values()))), 98)))
    l1_edges = np.linspace(-l1_span, l1_span, 61)
    for (label, d), (_, s), colour in zip(dex.items(), signed.items(), colours, strict=False):
        axes[0, 1].hist(
            np.clip(d, -span, span), bins=dex_edges, histtype="step", lw=1.5, color=colour, label=label
        )
        axes[1, 1].hist(
            np.clip(s, -l1_span, l1_span), bins=l1_edges, histtype="step", lw=1.5, color=colour, label=label
        )
    for x in (-threshold_dex, threshold_dex):
        axes[0, 1].axvline(x, ls="--", color="k", lw=0.8)
    axes[0, 1].set(xlabel=_DEX_LABEL[in_dex], ylabel="galaxies")
    axes[1, 1].set(xlabel="(pred - true) / $\\Delta$true  (signed $\\tilde{L}_1$)", ylabel="galaxies")
    axes[0, 1].legend()
    return fig


def plot_importances(importances: Mapping[str, Sequence[Mapping[str, float]]], *, top: int = 10) -> Figure:
    """Fig. 5: permutation importances (increase of validation L1~), one panel per model.

    Parameters
    ----------
    importances : mapping of label to list of {"feature", "importance"}
        Sorted most important first.
    top : int
        Features shown per panel.
    """
    panels = [(k, list(v)[:top]) for k, v in importances.items()]
    fig = Figure(figsize=(6.4, 1.0 + 0.32 * top * max(1, len(panels))), layout="constrained")
    axes = fig.subplots(max(1, len(panels)), 1, squeeze=False)[:, 0]
    for ax, (label, rows) in zip(axes, panels, strict=False):
        names = [r["feature"] for r in rows][::-1]
        values = [r["importance"] for r in rows][::-1]
        ax.barh(names, values, color=MORPH)
        ax.set(title=label, xlabel="increase of validation $\\tilde{L}_1$")
    return fig


def plot_feature_relations(
    ml: ArrayLike,
    log_lum: ArrayLike,
    redshift: ArrayLike,
    p_feature: ArrayLike,
    classes: ArrayLike,
    cnn4: ArrayLike | None = None,
    cnn4_label: str = "CNN4 feature",
    *,
    in_dex: bool = False,
    symbol: str = ML_SYMBOL,
) -> Figure:
    """Fig. 6: M/L vs total luminosity (coloured by P_feature), vs redshift, per morphology class, vs CNN4.

    Parameters
    ----------
    ml : (N,) array_like
        True M/L of the training galaxies.
    log_lum : (N,) array_like
        log10 of the total g-band luminosity (L_sun).
    redshift : (N,) array_like
    p_feature : (N,) array_like
        CNN1's probability of features or disk.
    classes : (N,) array_like of str
        E9 classes.
    cnn4 : (N,) array_like, optional
        One CNN4 feature for the last panel (omitted when None).
    in_dex, symbol
        ``ml`` is a target already in dex (plotted as it is); the target's symbol.
    """
    y = np.log10(_linear(ml, in_dex))
    y_label = f"log$_{{10}}$ {symbol}"
    lum = np.asarray(log_lum, dtype=np.float64)
    fig = Figure(figsize=(10, 8.5), layout="constrained")
    axes = fig.subplots(2, 2)
    grid = 30
    hb = axes[0, 0].hexbin(
        lum,
        y,
        C=np.asarray(p_feature, dtype=np.float64),
        gridsize=grid,
        cmap="coolwarm",
        reduce_C_function=np.mean,
        mincnt=1,
    )
    fig.colorbar(hb, ax=axes[0, 0], label="mean P$_{feature}$ (CNN1)")
    axes[0, 0].set(xlabel="log$_{10}$ total luminosity (L$_\\odot$)", ylabel=y_label)
    hb = axes[0, 1].hexbin(
        np.asarray(redshift, dtype=np.float64), y, gridsize=grid, cmap="Greys", mincnt=1, norm=LogNorm()
    )
    fig.colorbar(hb, ax=axes[0, 1], label="galaxies")
    axes[0, 1].set(xlabel="redshift", ylabel=y_label)
    cls = np.asarray(classes)
    for name, colour in CLASS_COLOURS.items():
        sel = cls == name
        axes[1, 0].scatter(
            lum[sel],
            y[sel],
            s=3,
            alpha=0.5,
            color=colour,
            label=f"{name} ({int(sel.sum())})",
            rasterized=True,
        )
    axes[1, 0].set(xlabel="log$_{10}$ total luminosity (L$_\\odot$)", ylabel=y_label)
    axes[1, 0].legend(markerscale=4)
    if cnn4 is None:
        axes[1, 1].set_axis_off()
    else:
        hb = axes[1, 1].hexbin(
            np.asarray(cnn4, dtype=np.float64), y, gridsize=grid, cmap="Greys", mincnt=1, norm=LogNorm()
        )
        fig.colorbar(hb, ax=axes[1, 1], label="galaxies")
        axes[1, 1].set(xlabel=cnn4_label, ylabel=y_label)
    return fig


def plot_colour_methods(
    true: ArrayLike,
    predictions: Mapping[str, ArrayLike],
    *,
    threshold_dex: float = 0.15,
    in_dex: bool = False,
    symbol: str = ML_SYMBOL,
) -> Figure:
    """Fig. 7: predicted vs true for up to three colour methods and their dex-error histograms.

    Parameters
    ----------
    true : (N,) array_like
        True M/L of the test galaxies.
    predictions : mapping of label to (N,) array
        E.g. power law, GBM on (z, L_g, L_i, L_g/L_i), that GBM plus morphology; NaN entries (galaxies a
        method cannot predict) are left out of that method's panels.
    in_dex, symbol
        The target is already in dex (dex error ``pred - true``, shown as ``10**value``); its symbol.
    """
    t = _linear(true, in_dex)
    preds = {k: _linear(v, in_dex) for k, v in predictions.items()}
    fig = Figure(figsize=(10, 8.5), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    lim = _limits(t, *preds.values())
    edges = np.linspace(-0.6, 0.6, 61)
    for k, (label, p) in enumerate(list(preds.items())[:3]):
        ok = np.isfinite(p) & (p > 0)
        _scatter_pred_true(axes[k], p[ok], t[ok], label, lim, symbol)
        axes[3].hist(
            np.clip(np.log10(p[ok] / t[ok]), -0.6, 0.6), bins=edges, histtype="step", lw=1.5, label=label
        )
    for x in (-threshold_dex, threshold_dex):
        axes[3].axvline(x, ls="--", color="k", lw=0.8)
    axes[3].set(xlabel=_DEX_LABEL[in_dex], ylabel="galaxies")
    axes[3].legend()
    return fig


def plot_band_sequence(l1_without: Mapping[str, float], l1_with: Mapping[str, float]) -> Figure:
    """Fig. 8: test L1~ of GBMs per band set, without (yellow) and with (green) morphology.

    Parameters
    ----------
    l1_without, l1_with : mapping of band set (``"gri"``) to L1~
    """
    sets = list(dict.fromkeys([*l1_without, *l1_with]))
    x = np.arange(len(sets))
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    width = 0.38
    ax.bar(
        x - width / 2, [l1_without.get(s, np.nan) for s in sets], width, color="#f2c14e", label="global only"
    )
    ax.bar(x + width / 2, [l1_with.get(s, np.nan) for s in sets], width, color=MORPH, label="+ morphology")
    ax.axhline(1.0, ls="--", color="k", lw=0.8)
    ax.set_xticks(x, sets)
    ax.set(xlabel="bands", ylabel="test $\\tilde{L}_1$")
    ax.legend()
    return fig


def plot_interval_reliability(curves: Mapping[str, Sequence[Mapping[str, Any]]]) -> Figure:
    """Reliability of the prediction intervals: empirical against nominal coverage on the test split.

    Parameters
    ----------
    curves : mapping of model label to rows
        Each row has ``level``, ``coverage`` and ``ci95`` ([lo, hi], the binomial 95 % interval).
    """
    fig = Figure(figsize=(4.8, 4.4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", color="k", lw=0.8, label="nominal")
    for (label, rows), colour in zip(curves.items(), (MORPH, NO_MORPH, "tab:blue"), strict=False):
        level = np.array([r["level"] for r in rows])
        coverage = np.array([r["coverage"] for r in rows])
        lo = np.array([r["ci95"][0] for r in rows])
        hi = np.array([r["ci95"][1] for r in rows])
        ax.errorbar(
            level, coverage, yerr=[coverage - lo, hi - coverage], fmt="o", ms=3, color=colour, label=label
        )
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="nominal coverage", ylabel="empirical coverage (test)")
    ax.legend(loc="upper left")
    return fig


def plot_interval_width_vs_error(
    half_width_dex: ArrayLike, abs_error_dex: ArrayLike, *, level: float, bins: int = 8
) -> Figure:
    """Interval half-width against the absolute error of each test galaxy, with coverage per width bin.

    Parameters
    ----------
    half_width_dex, abs_error_dex : (N,) array_like
        Half-width of the interval at ``level`` and |log10 prediction - log10 target| (dex).
    level : float
        Nominal coverage of the intervals.
    bins : int
        Width bins (equal counts) of the coverage panel.
    """
    half = np.asarray(half_width_dex, dtype=np.float64)
    error = np.asarray(abs_error_dex, dtype=np.float64)
    fig = Figure(figsize=(8.8, 4.0), layout="constrained")
    ax_scatter, ax_cov = fig.subplots(1, 2)
    ax_scatter.scatter(half, error, s=4, alpha=0.4, color=MORPH, rasterized=True)
    top = float(np.nanmax([half.max(initial=0.0), error.max(initial=0.0)])) * 1.05 or 1.0
    ax_scatter.plot([0, top], [0, top], ls="--", color="k", lw=0.8, label="error = half-width")
    ax_scatter.set(
        xlabel=f"{level:.0%} interval half-width (dex)", ylabel="|error| (dex)", xlim=(0, top), ylim=(0, top)
    )
    ax_scatter.legend(loc="upper left")
    edges = np.unique(np.quantile(half, np.linspace(0, 1, bins + 1))) if half.size else np.array([0.0])
    index = np.clip(np.searchsorted(edges, half, side="right") - 1, 0, max(0, edges.size - 2))
    centres, coverage, err_lo, err_hi = [], [], [], []
    for b in range(max(0, edges.size - 1)):
        members = index == b
        n = int(members.sum())
        if n == 0:
            continue
        k = int((error[members] <= half[members]).sum())
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95)
        centres.append(float(np.median(half[members])))
        coverage.append(k / n)
        err_lo.append(k / n - ci.low)
        err_hi.append(ci.high - k / n)
    ax_cov.errorbar(centres, coverage, yerr=[err_lo, err_hi], fmt="o-", color=MORPH)
    ax_cov.axhline(level, ls="--", color="k", lw=0.8, label=f"nominal {level:.0%}")
    ax_cov.set(xlabel="interval half-width (dex), bins of equal counts", ylabel="coverage", ylim=(0, 1.02))
    ax_cov.legend(loc="lower right")
    return fig
