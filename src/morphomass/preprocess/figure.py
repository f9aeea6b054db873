"""Fig. 1 of the paper: the same galaxies in linear, fixed-a and automatic-a log scaling."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from morphomass.errors import InputDataError
from morphomass.preprocess.scaling import log_scale

__all__ = ["plot_scaling_demo"]


def plot_scaling_demo(
    images01: Sequence[np.ndarray],
    scaling_a: Sequence[float],
    *,
    a_fixed: float,
    labels: Sequence[str] | None = None,
):
    """Draw a grid: one column per galaxy; rows linear, log with ``a_fixed``.

    Log with each galaxy's own ``a``.

    Parameters
    ----------
    images01 : sequence of (n, n) ndarray of float
        Star-subtracted images rescaled linearly to [0, 1], one per galaxy.
    scaling_a : sequence of float
        Each galaxy's automatic scaling value (shown as an inset in the bottom row).
    a_fixed : float
        The constant scaling value of the middle row (the median of the run in the paper: 78).
    labels : sequence of str, optional
        Column titles (e.g. object ids).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InputDataError
        If the sequences do not have the same non-zero length.
    """
    from matplotlib.figure import Figure

    n = len(images01)
    if n == 0 or len(scaling_a) != n or (labels is not None and len(labels) != n):
        msg = (
            f"plot_scaling_demo: images01 ({n}), scaling_a ({len(scaling_a)}) and labels "
            f"({'-' if labels is None else len(labels)}) must have the same non-zero length"
        )
        raise InputDataError(msg)
    fig = Figure(figsize=(2.6 * n, 8.0), layout="constrained")
    axes = fig.subplots(3, n, squeeze=False)
    rows = ("linear", f"a = {a_fixed:.0f} (median)", "automatic a")
    for col, (image, a) in enumerate(zip(images01, scaling_a, strict=True)):
        panels = (np.asarray(image, dtype=np.float32), log_scale(image, a_fixed), log_scale(image, a))
        for row, panel in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(panel, origin="lower", cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(rows[row])
        axes[2, col].text(
            0.04, 0.94, f"a = {a:.3g}", transform=axes[2, col].transAxes, color="yellow", va="top", fontsize=9
        )
        if labels is not None:
            axes[0, col].set_title(labels[col], fontsize=8)
    fig.suptitle("Automatic scaling value (Dobbels+19 Fig. 1): scaled noise level fixed")
    return fig
