"""Small synthetic stand-ins for sample.parquet and the feature tables (tests and bench/bench_gbm.py).

The tables have the DESIGN §2 column names and a simple universe in which M/L depends on luminosity, colour
and morphology: four classes (elliptical, disc, edge-on disc, irregular); an age that raises M/L and reddens
g-i along one slope; dust in edge-on discs that raises the observed M/L along a flatter slope, so colour alone
leaves an ambiguity that the morphology features (edge-on probability, the CNN-like trunk) resolve; brighter
ellipticals. CNN-like features are noisy, rectified mixtures of the latent morphology, some always zero.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from morphomass.gz2 import ANSWER_COLUMNS, answer_index

__all__ = ["CLASSES", "make_synthetic_tables"]

CLASSES: tuple[str, ...] = ("elliptical", "disk", "edge_on", "irregular")
_CLASS_FRACTIONS = (0.4, 0.42, 0.12, 0.06)
_C_KM_S, _H0 = 3.0e5, 70.0
_M_SUN_AB = {"u": 6.39, "g": 5.11, "r": 4.65, "i": 4.53, "z": 4.50}
_TASKS = sorted({c.split("_")[2] for c in ANSWER_COLUMNS})


def _class_probabilities(cls: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Draw (N, 37) probability-like values: features/disk, edge-on, irregular follow the class."""
    n = cls.size
    p = rng.uniform(0, 0.3, size=(n, len(ANSWER_COLUMNS)))
    disk = np.isin(cls, (1, 2)).astype(float)
    p[:, answer_index("a01")] = 1 - disk
    p[:, answer_index("a02")] = disk
    p[:, answer_index("a04")] = (cls == 2).astype(float)
    p[:, answer_index("a22")] = (cls == 3).astype(float)
    for aid in ("a01", "a02", "a04", "a22"):
        k = answer_index(aid)
        p[:, k] = np.clip(p[:, k] * rng.uniform(0.6, 1.0, n) + rng.normal(0, noise, n), 0, 1)
    return p.astype(np.float32)


def make_synthetic_tables(
    n: int,
    *,
    rng: np.random.Generator,
    n_trunk: int = 64,
    n_dead: int = 3,
    bands: str = "ugriz",
    gz2_fraction: float = 0.8,
    splits: tuple[float, float] = (0.1, 0.1),
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Draw a synthetic sample and its photometric and CNN feature tables.

    Parameters
    ----------
    n : int
        Galaxies.
    rng : numpy.random.Generator
    n_trunk : int
        ``cnn1_trunk_*`` columns (2048 in the paper).
    n_dead : int
        Trunk columns that are zero for every galaxy (dead neurons).
    bands : str
        Bands with ``flux_<band>`` and ``lum_<band>`` columns in the sample.
    gz2_fraction : float
        Fraction of galaxies with GZ2 probabilities (the others get NaN, ``has_gz2`` False).
    splits : (float, float)
        Test and validation fractions (the rest is training).

    Returns
    -------
    sample, photometric, cnn : DataFrame
        With the DESIGN §2 columns; ``sample`` also has ``true_class`` (0-3, :data:`CLASSES`) for the tests.
    """
    cls = rng.choice(len(CLASSES), size=n, p=_CLASS_FRACTIONS)
    age = np.clip(
        np.select(
            [cls == 0, cls == 3],
            [rng.normal(0.85, 0.1, n), rng.normal(0.15, 0.1, n)],
            rng.normal(0.45, 0.15, n),
        ),
        0,
        1,
    )
    dust_mag = np.where(cls == 2, rng.uniform(0.4, 1.2, n), rng.uniform(0.0, 0.1, n))
    log_mass = rng.normal(10.4, 0.45, n) + 0.4 * (cls == 0) - 0.6 * (cls == 3)
    log_ml_physical = -0.45 + 1.1 * age + 0.4 * dust_mag + 0.05 * (log_mass - 10.4)
    log_ml = log_ml_physical + rng.normal(0, 0.08, n)  # scatter no image or colour can predict
    gi = 0.35 + 0.65 * age + 0.25 * dust_mag + rng.normal(0, 0.02, n)
    ml = 10**log_ml
    lum_g = 10 ** (log_mass - log_ml)
    ml_err = ml * np.maximum(0.05, np.exp(rng.normal(np.log(0.09), 0.35, n)))
    z = rng.uniform(0.01, 0.12, n)
    dist = _C_KM_S * z / _H0
    colour = {"u": 1.2 + 1.2 * age, "g": 0.0 * age, "r": 0.5 * gi, "i": gi, "z": gi + 0.15 + 0.2 * age}
    sample = pd.DataFrame(
        {
            "objid": np.arange(1_000_000, 1_000_000 + n, dtype=np.int64),
            "z": z,
            "d25_arcmin": 10 ** rng.normal(-0.2, 0.15, n),
            "chi2_r": rng.lognormal(0, 0.4, n),
        }
    )
    sample["lum_g"] = lum_g
    sample["ml"] = ml
    sample["ml_err"] = ml_err
    sample["target"], sample["target_err"] = ml, ml_err  # catalog.target = "ml_g"
    u = rng.random(n)
    sample["split"] = np.where(u < splits[0], "test", np.where(u < splits[0] + splits[1], "val", "train"))
    has_gz2 = rng.random(n) < gz2_fraction
    sample["has_gz2"] = has_gz2
    gz2_p = _class_probabilities(cls, 0.05, rng).astype(np.float64)
    gz2_p[~has_gz2] = np.nan
    for k, col in enumerate(ANSWER_COLUMNS):
        sample[col] = gz2_p[:, k]
    mag_g = _M_SUN_AB["g"] - 2.5 * np.log10(lum_g) + 5 * np.log10(dist * 1e5)
    for b in bands:
        mag = mag_g - colour[b] + rng.normal(0, 0.02, n)
        sample[f"flux_{b}"] = 10 ** (-0.4 * (mag - 22.5))
        if b != "g":
            sample[f"lum_{b}"] = 10 ** (-0.4 * (mag - 5 * np.log10(dist * 1e5) - _M_SUN_AB[b]))
    sample["dist_mpc"] = dist
    sample["pixel_kpc"] = dist * 1e3 * 0.396 / 206265.0
    sample["true_class"] = cls

    size = np.maximum(16.0, sample["d25_arcmin"].to_numpy() * 60 * 1.125 / 0.396)
    concentration = np.select([cls == 0, cls == 3], [0.3, 0.04], 0.12) * rng.lognormal(0, 0.2, n)
    lum_img = lum_g * rng.lognormal(0, 0.05, n)
    phot = pd.DataFrame({"objid": sample["objid"]})
    phot["lum_sum"] = lum_img
    phot["lum_mean"] = lum_img / size**2
    phot["lum_max"] = lum_img * concentration * 0.3
    phot["lum_min"] = -np.abs(rng.normal(0, 1e-3, n)) * lum_img / size**2
    phot["lum_std"] = lum_img / size**2 * (1 + 20 * concentration)
    phot["lum_center"] = lum_img * concentration * 0.25
    phot["lum_center5x5"] = lum_img * concentration * 0.1
    phot["image_size_pix"] = size
    phot["scaling_a"] = rng.lognormal(np.log(78), 0.4, n)
    for k, stat in enumerate(("sum", "mean", "std", "center", "center5x5")):
        phot[f"img_{stat}"] = concentration * (k + 1) + rng.normal(0, 0.02, n)
    phot["redshift"] = z
    phot["pixel_kpc"] = sample["pixel_kpc"]

    latent = np.column_stack([np.eye(len(CLASSES))[cls], age, dust_mag, rng.normal(size=(n, 4))])
    cnn = {"objid": sample["objid"].to_numpy()}
    for net, noise in (("cnn1", 0.08), ("cnn2", 0.1), ("cnn3", 0.12)):
        probs = _class_probabilities(cls, noise, rng)
        for k, col in enumerate(ANSWER_COLUMNS):
            cnn[f"{net}_p_{col[len('gz2_p_') :]}"] = probs[:, k]
    weights = rng.normal(size=(latent.shape[1], n_trunk)) * (rng.random((latent.shape[1], n_trunk)) < 0.4)
    trunk = np.maximum(latent @ weights + rng.normal(0, 0.5, (n, n_trunk)) - 0.3, 0).astype(np.float32)
    trunk[:, :n_dead] = 0
    for k in range(n_trunk):
        cnn[f"cnn1_trunk_{k:04d}"] = trunk[:, k]
    mix = rng.normal(size=(2, 37))
    c4 = np.column_stack([log_ml_physical + rng.normal(0, 0.12, n), rng.normal(size=n)]) @ mix
    for k in range(37):
        cnn[f"cnn4_f{k:02d}"] = np.maximum(c4[:, k], 0).astype(np.float32)
    # Classical morphology (drawn last, so the other columns are those of earlier versions): concentration and
    # Gini follow the light concentration, the axis ratio is low for edge-on discs.
    phot["morph_concentration"] = 2.5 + 8 * concentration + rng.normal(0, 0.2, n)
    phot["morph_gini"] = 0.4 + concentration + rng.normal(0, 0.03, n)
    phot["morph_axis_ratio"] = np.where(cls == 2, rng.uniform(0.1, 0.3, n), rng.uniform(0.4, 1.0, n))
    return sample, phot, pd.DataFrame(cnn)
