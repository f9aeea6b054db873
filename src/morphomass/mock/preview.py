"""A grid of mock galaxies by class and inclination in the paper's automatic log scaling.

To check them by eye.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from astropy.stats import sigma_clipped_stats
from numpy.typing import NDArray
from scipy.optimize import brentq

from morphomass.config import PipelineConfig
from morphomass.mock.render import render_galaxy
from morphomass.mock.survey import make_survey
from morphomass.workdir import WorkDir, atomic_path

__all__ = ["log_scale_for_display", "make_preview"]

logger = logging.getLogger(__name__)

_ROWS = (
    ("elliptical", None, "elliptical"),
    ("disk", (0.8, 1.0), "disc, face-on"),
    ("disk", (0.35, 0.7), "disc, inclined"),
    ("disk", (0.0, 0.2), "disc, edge-on"),
    ("irregular", None, "irregular"),
    ("merger", None, "merger"),
)


def log_scale_for_display(image: NDArray[np.floating], noise_target: float = 0.2) -> NDArray[np.float64]:
    """Dobbels et al. (2019) automatic log scaling (SPEC I2-I3), for display only.

    The preprocessing stage owns the production version; this one only makes the preview look like the paper's
    network inputs.
    """
    lo, hi = float(np.min(image)), float(np.max(image))
    scaled = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image, dtype=float)
    mean, _, std = sigma_clipped_stats(scaled)
    noise = float(np.clip(mean + 2 * std, 1e-6, noise_target * 0.999))
    a = brentq(lambda x: np.log1p(x * noise) / np.log1p(x) - noise_target, 1e-6, 1e9)
    return np.log1p(a * scaled) / np.log1p(a)


def make_preview(config: PipelineConfig, workdir: WorkDir, *, per_row: int = 6) -> Path:
    """Render a grid of mock galaxies (rows.

    Class and inclination) and save it as ``results/figures/mock_preview.png``.

    The galaxies are drawn afresh from the mock universe with the run's seed, so the figure shows what the
    survey looks like without reading ``raw/``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from morphomass.mock.stage import galaxy_specs

    mock = config.mock.model_copy(
        update={"n_galaxies": 400, "image_bands": ("g",), "small_galaxy_ratio": 0.0}
    )
    survey = make_survey(mock, np.random.default_rng(config.mock.seed))
    specs = {int(s.seed): s for s in galaxy_specs(survey, mock)}
    truth = survey.truth[survey.truth["has_image"]]
    fig, axes = plt.subplots(len(_ROWS), per_row, figsize=(1.7 * per_row, 1.8 * len(_ROWS)))
    for r, (cls, cos_range, label) in enumerate(_ROWS):
        rows = truth[truth["cls"] == cls]
        if cos_range is not None:
            rows = rows[(rows["cos_incl"] >= cos_range[0]) & (rows["cos_incl"] <= cos_range[1])]
        rows = rows.sort_values("d25_arcmin_leda", ascending=False).head(per_row)
        for c in range(per_row):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(rows):
                ax.set_axis_off()
                continue
            row = rows.iloc[c]
            image = render_galaxy(specs[int(row["render_seed"])])["g"]
            ax.imshow(log_scale_for_display(image), origin="lower", cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"z={row['z']:.3f} M/L={row['ml_true']:.1f}", fontsize=6)
        axes[r, 0].set_ylabel(label, fontsize=8)
    fig.suptitle("morphomass mock survey, g band, automatic log scaling (Dobbels+19 Fig. 1)", fontsize=9)
    fig.tight_layout()
    out = workdir.figures / "mock_preview.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    plt.close(fig)
    logger.info("mock preview written to %s", out)
    return out
