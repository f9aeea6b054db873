"""The mock universe: galaxy populations, stellar populations, dust, photometry, sizes and selection.

Pure functions of arrays and a ``numpy.random.Generator``; no I/O. docs/mock.md explains every relation and
its parameters. Quantities carry their unit in the name (``_kpc``, ``_arcsec``, ``_mag``); ``log_`` means
log10.

The target the pipeline learns is the *observed-frame* g-band mass-to-light ratio, M* / L_g with L_g computed
from the apparent g magnitude and the luminosity distance without k-correction (DESIGN §2). So::

    log10(M/L_g)_target = log10(M/L_g)_intrinsic + 0.4 (A_g + K_g)

where the intrinsic (dust-free, rest-frame) M/L follows the stellar population, A_g is the dust attenuation
(which grows with the inclination of discs) and K_g the k-correction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from astropy.cosmology import FlatLambdaCDM
from numpy.typing import NDArray

from morphomass.photometry import M_SUN_AB

__all__ = [
    "BANDS",
    "CLASSES",
    "MOCK_COSMOLOGY",
    "draw_galaxies",
    "isophotal_radius_arcsec",
    "max_selectable_redshift",
    "observe_galaxies",
]

Array = NDArray[np.float64]

BANDS: tuple[str, ...] = ("u", "g", "r", "i", "z")
CLASSES: tuple[str, ...] = ("elliptical", "disk", "irregular", "merger")
#: Class fractions of the parent population (before the flux limit and the D25 cut).
CLASS_FRACTIONS: tuple[float, ...] = (0.30, 0.63, 0.04, 0.03)
#: The mock universe's cosmology; fixed, independent of the analysis cosmology of the pipeline.
MOCK_COSMOLOGY = FlatLambdaCDM(H0=70.0, Om0=0.3)
#: SDSS modelMag minus AB magnitude per band: the u and z zero points are off AB (u_AB = u - 0.04, z_AB = z +
#: 0.02).
SDSS_MAG_MINUS_AB: dict[str, float] = {"u": 0.04, "g": 0.0, "r": 0.0, "i": 0.0, "z": -0.02}
#: Attenuation in each band relative to g for a screen (Cardelli-like); discs grey with inclination (see
#: dust).
DUST_RATIO: dict[str, float] = {"u": 1.30, "g": 1.0, "r": 0.76, "i": 0.57, "z": 0.43}
#: Per-pixel sky noise (1 sigma, nanomaggies) of single-epoch SDSS frames at 0.396"/px: sqrt of the sky's
#: photo-electrons (sky u 22.1, g 21.85, r 20.86, i 20.15, z 18.95 mag/arcsec^2; gains 1.6/3.9/4.7/5.0/4.7
#: e-/DN; 0.0098/0.0038/0.0050/0.0066/0.0235 nMgy/DN), docs/mock.md row 9; r agrees with the 0.024-0.030
#: measured on the real frames in tests/data/sdss_real.
SKY_NOISE_NMGY: dict[str, float] = {"u": 0.048, "g": 0.017, "r": 0.028, "i": 0.042, "z": 0.14}
#: Photo-electrons per nanomaggy (gain ~4.7 e-/DN and ~200 DN/nMgy), for the source Poisson noise.
ELECTRONS_PER_NMGY: float = 900.0
SDSS_SPECTRO_LIMIT_R: float = 17.77
#: Isophote of the mock's HyperLeda D25 (B mag/arcsec^2): 1 mag below the nominal RC3 25, which gives a median
#: sample redshift of 0.037 where the paper's is ~0.05 (26 gives 0.049; docs/mock.md row 11).
D25_ISOPHOTE_B_MAG_ARCSEC2: float = 26.0
DISK_THICKNESS: float = 0.12
#: Age scale of the colours' saturation (colours ~ 1 - exp(-age / scale)); see _stellar_populations.
COLOUR_AGE_SCALE: float = 0.5  # intrinsic axis ratio (scale height / scale length) of an edge-on disc

# Schechter parameters (log M*, alpha) of each class, log10 stellar mass range drawn.
_MASS_FUNCTION = {
    "elliptical": (10.95, -0.5),
    "disk": (10.45, -1.2),
    "irregular": (9.7, -1.45),
    "merger": (10.7, -0.9),
}
_LOG_MASS_RANGE = (8.3, 11.9)

# Structure-population relations pinned in docs/mock.md (rows 1-8), before they were measured.
#: Bulge half-light radius over the disc's: r_e/h = 0.22 (MacArthur, Courteau & Holtzman 2003) / 1.678, and
#: its lognormal scatter (0.09 / 0.22 of r_e/h, in dex).
BULGE_TO_DISC_HLR: float = 0.22 / 1.678
BULGE_TO_DISC_HLR_SCATTER_DEX: float = 0.17
#: Bulge Sersic index: log10 n = a + b B/T + N(0, scatter) (anchored on Balcells+03, Fisher & Drory 2008).
BULGE_SERSIC_LOG_N: tuple[float, float, float] = (0.06, 1.0, 0.12)
#: Disc B/T ~ Beta(mu k, (1 - mu) k), mu = clip(a + b (log M - 10), lo, hi) (Weinzirl+09, Gadotti+09).
DISC_BT_MEAN: tuple[float, float, float, float] = (0.12, 0.10, 0.05, 0.5)
DISC_BT_CONCENTRATION: float = 8.0
#: Mean disc B/T of the earlier mass-independent Beta(1.6, 3.2): disc ages are tied to B/T relative to mu(M).
_DISC_BT_MEAN_BEFORE: float = 1.6 / (1.6 + 3.2)
#: Elliptical Sersic index: log10 n = slope (log M - 11) + zero + N(0, scatter) (Graham & Guzman 2003).
ELLIPTICAL_SERSIC_LOG_N: tuple[float, float, float] = (0.266, 0.657, 0.12)
#: Early types at fixed mass: d age / d log R_e (from d log t / d log Sigma = 0.3) and d metallicity /
#: d log R_e (from d[Z/H] / d log Phi = 0.35 at 0.16 dex per metallicity unit); McDermid+15, Barone+18.
EARLY_TYPE_AGE_PER_DEX_RE: float = -0.6
EARLY_TYPE_METALLICITY_PER_DEX_RE: float = -0.35 / 0.16
#: Bar probability of discs: clip(a + b ((g-r)_rest - pivot), lo, hi) for B/T > min (Masters et al. 2011).
BAR_PROBABILITY: tuple[float, float, float, float, float] = (0.20, 0.86, 0.45, 0.10, 0.60)
BAR_MIN_BULGE_FRACTION: float = 0.02
#: Visible (type 1 AGN-like) nuclei: probability below / above log M = pivot, and the lognormal flux fraction
#: (median, dex, min, max) (Hao et al. 2005, Ho 2008; a chosen form, docs/mock.md row 8).
NUCLEUS_PROBABILITY: tuple[float, float, float] = (0.01, 0.02, 10.5)
NUCLEUS_FLUX_FRACTION: tuple[float, float, float, float] = (0.08, 0.3, 0.02, 0.5)
_Z_RANGE = (0.01, 0.3)


_LOG_ML_R_MIN = -1.1  # lowest rest-frame log M/L_r any mock galaxy reaches (young burst, no dust)
_HLR_KPC_RELATION = {  # (slope, pivot, intercept) of log half-light radius vs log mass, per class
    "elliptical": (0.56, 11.0, 0.66),
    "disk": (0.22, 10.0, 0.60),
    "irregular": (0.25, 9.0, 0.50),
    "merger": (0.22, 10.0, 0.60),
}
_Z_GRID = np.linspace(0.0, 0.35, 1401)
_VOLUME_GRID = MOCK_COSMOLOGY.comoving_volume(_Z_GRID).value
_DIST_MOD_GRID = 5 * np.log10(np.maximum(MOCK_COSMOLOGY.luminosity_distance(_Z_GRID).value, 1e-6) * 1e5)
_KPC_PER_ARCSEC_GRID = MOCK_COSMOLOGY.kpc_proper_per_arcmin(_Z_GRID).value / 60.0


def max_selectable_redshift(
    log_mstar: Array, cls_name: str, *, d25_min_arcmin: float, r_mag_limit: float = SDSS_SPECTRO_LIMIT_R
) -> Array:
    """Conservative upper redshift at which a galaxy of this mass and class could pass both selections.

    Uses the brightest M/L and the largest size any mock galaxy of that mass can have, so no galaxy beyond it
    can be brighter than ``r_mag_limit`` *and* larger than ``d25_min_arcmin``. Drawing redshifts only below it
    leaves the selected population unchanged and saves drawing galaxies that would all be rejected.
    """
    abs_r_brightest = M_SUN_AB["r"] - 2.5 * (log_mstar - _LOG_ML_R_MIN)
    z_flux = np.interp(r_mag_limit + 0.2 - abs_r_brightest, _DIST_MOD_GRID[1:], _Z_GRID[1:])
    slope, pivot, intercept = _HLR_KPC_RELATION[cls_name]
    hlr_max_kpc = 10 ** (slope * (log_mstar - pivot) + intercept + 0.7)
    d25_max_kpc = 2 * 8.0 * hlr_max_kpc  # an isophotal radius never exceeds ~8 half-light radii here
    z_size = np.interp(d25_max_kpc / (d25_min_arcmin * 60), _KPC_PER_ARCSEC_GRID[1:], _Z_GRID[1:])
    return np.clip(np.minimum(z_flux, z_size), _Z_RANGE[0] + 1e-4, _Z_RANGE[1])


def _draw_mass_redshift(
    n: int, rng: np.random.Generator, *, d25_min_arcmin: float | None
) -> tuple[NDArray[np.int64], Array, Array]:
    """Class, log stellar mass and redshift, uniform in comoving volume and Schechter in mass per class.

    With ``d25_min_arcmin`` the draw is restricted to the selectable region z < z_max(M) (see
    :func:`max_selectable_redshift`), with the mass distribution weighted by the volume inside it, which is
    the exact joint distribution of the parent population restricted to that region.
    """
    grid = np.linspace(*_LOG_MASS_RANGE, 721)
    weights = []
    z_max = []
    for k, name in enumerate(CLASSES):
        log_mstar_char, alpha = _MASS_FUNCTION[name]
        x = 10 ** (grid - log_mstar_char)
        phi = x ** (alpha + 1) * np.exp(-x)
        phi /= phi.sum()
        zm = (
            np.full_like(grid, _Z_RANGE[1])
            if d25_min_arcmin is None
            else max_selectable_redshift(grid, name, d25_min_arcmin=d25_min_arcmin)
        )
        volume = np.interp(zm, _Z_GRID, _VOLUME_GRID) - np.interp(_Z_RANGE[0], _Z_GRID, _VOLUME_GRID)
        weights.append(CLASS_FRACTIONS[k] * phi * volume)
        z_max.append(zm)
    weights_flat = np.concatenate(weights)
    pick = rng.choice(weights_flat.size, size=n, p=weights_flat / weights_flat.sum())
    cls_index = pick // grid.size
    step = grid[1] - grid[0]
    log_mstar = grid[pick % grid.size] + rng.uniform(-step / 2, step / 2, n)
    zm = np.concatenate(z_max)[pick]
    v_lo = np.interp(_Z_RANGE[0], _Z_GRID, _VOLUME_GRID)
    v = v_lo + rng.uniform(0, 1, n) * (np.interp(zm, _Z_GRID, _VOLUME_GRID) - v_lo)
    z = np.interp(v, _VOLUME_GRID, _Z_GRID)
    return cls_index.astype(np.int64), log_mstar, z


def _quantise(values: Array, *, step: float, lo: float, hi: float) -> Array:
    """Round to a multiple of ``step`` within [lo, hi] (GalSim caches one Sersic table per index)."""
    return np.clip(np.round(values / step) * step, lo, hi)


def mean_disc_bulge_fraction(log_mstar: Array) -> Array:
    """Return the mean g-band B/T of disc galaxies at each stellar mass (docs/mock.md row 3)."""
    intercept, slope, lo, hi = DISC_BT_MEAN
    return np.clip(intercept + slope * (np.asarray(log_mstar) - 10.0), lo, hi)


def draw_disc_bulge_fraction(log_mstar: Array, rng: np.random.Generator) -> Array:
    """Draw the g-band B/T of discs: a Beta distribution whose mean rises with stellar mass (row 3).

    Parameters
    ----------
    log_mstar : (N,) ndarray
        log10 M*/M_sun.
    rng : numpy.random.Generator

    Returns
    -------
    (N,) ndarray
        B/T in (0, 1).
    """
    mean = mean_disc_bulge_fraction(log_mstar)
    return rng.beta(mean * DISC_BT_CONCENTRATION, (1 - mean) * DISC_BT_CONCENTRATION)


def draw_bulge_sersic_n(bulge_fraction: Array, rng: np.random.Generator) -> Array:
    """Draw the Sersic index of disc bulges, rising with B/T (row 2), quantised to 0.5 in [1, 4.5]."""
    intercept, slope, scatter = BULGE_SERSIC_LOG_N
    log_n = intercept + slope * np.asarray(bulge_fraction) + rng.normal(0, scatter, np.size(bulge_fraction))
    return _quantise(10**log_n, step=0.5, lo=1.0, hi=4.5)


def draw_elliptical_sersic_n(log_mstar: Array, rng: np.random.Generator) -> Array:
    """Draw the Sersic index of ellipticals, rising with stellar mass (row 4), quantised to 0.5 in [2, 6]."""
    slope, zero, scatter = ELLIPTICAL_SERSIC_LOG_N
    log_n = zero + slope * (np.asarray(log_mstar) - 11.0) + rng.normal(0, scatter, np.size(log_mstar))
    return _quantise(10**log_n, step=0.5, lo=2.0, hi=6.0)


def draw_bulge_to_disc_hlr(n: int, rng: np.random.Generator) -> Array:
    """Draw the bulge-to-disc half-light radius ratio (row 1): lognormal around 0.131, within [0.04, 0.5]."""
    ratio = BULGE_TO_DISC_HLR * 10 ** rng.normal(0, BULGE_TO_DISC_HLR_SCATTER_DEX, n)
    return np.clip(ratio, 0.04, 0.5)


def early_type_residuals(delta_log_hlr: Array) -> tuple[Array, Array]:
    """Age and metallicity offsets of an early type at fixed mass from its size offset (row 5).

    Parameters
    ----------
    delta_log_hlr : (N,) ndarray
        log10 half-light radius minus the size-mass relation at the galaxy's mass (dex).

    Returns
    -------
    delta_age, delta_metallicity : (N,) ndarray
        Compact (negative offset) galaxies are older and more metal-rich.
    """
    delta = np.asarray(delta_log_hlr, dtype=float)
    return EARLY_TYPE_AGE_PER_DEX_RE * delta, EARLY_TYPE_METALLICITY_PER_DEX_RE * delta


def rest_colours(age: Array, metallicity: Array, burst: Array) -> dict[str, Array]:
    """Return the dust-free rest-frame colours m_band - m_g of a stellar population (no scatter).

    Age reddens the colours along a saturating curve, (1 - exp(-age / scale)) / (1 - exp(-1 / scale)), while
    log M/L keeps rising linearly with age: the colour-M/L relation curves, as in SPS models.
    """
    age, met, burst = (np.asarray(x, dtype=float) for x in (age, metallicity, burst))
    colour_age = (1 - np.exp(-age / COLOUR_AGE_SCALE)) / (1 - np.exp(-1 / COLOUR_AGE_SCALE))
    return {
        "u": 0.85 + 1.05 * colour_age + 0.08 * met - 0.60 * burst,
        "g": np.zeros_like(age),
        "r": -(0.20 + 0.55 * colour_age + 0.030 * met - 0.30 * burst),
        "i": -(0.38 + 0.80 * colour_age + 0.050 * met - 0.50 * burst),
        "z": -(0.43 + 1.00 * colour_age + 0.070 * met - 0.60 * burst),
    }


def bar_probability(rest_g_minus_r: Array) -> Array:
    """Return the probability that a disc is barred, rising with its rest-frame g-r colour (row 6)."""
    base, slope, pivot, lo, hi = BAR_PROBABILITY
    return np.clip(base + slope * (np.asarray(rest_g_minus_r) - pivot), lo, hi)


def draw_nucleus_flux_fraction(log_mstar: Array, rng: np.random.Generator) -> Array:
    """Draw the fraction of a galaxy's light in a visible point nucleus (row 8); 0 for most galaxies."""
    p_low, p_high, pivot = NUCLEUS_PROBABILITY
    median, dex, lo, hi = NUCLEUS_FLUX_FRACTION
    log_mstar = np.asarray(log_mstar, dtype=float)
    has = rng.uniform(0, 1, log_mstar.size) < np.where(log_mstar >= pivot, p_high, p_low)
    fraction = np.clip(median * 10 ** rng.normal(0, dex, log_mstar.size), lo, hi)
    return np.where(has, fraction, 0.0)


def draw_galaxies(n: int, rng: np.random.Generator, *, d25_min_arcmin: float | None = None) -> pd.DataFrame:
    """Draw the intrinsic properties of ``n`` candidate galaxies of the parent population.

    Parameters
    ----------
    n : int
        Number of candidates (before any selection).
    rng : numpy.random.Generator
    d25_min_arcmin : float, optional
        Restrict the draw to where a galaxy could pass this D25 cut and the spectroscopic flux limit
        (:func:`max_selectable_redshift`); None draws the whole 0.01 < z < 0.3 volume.

    Returns
    -------
    pandas.DataFrame
        One row per candidate: ``cls`` (class name), ``z``, ``log_mstar``, ``bulge_fraction`` (g-band B/T),
        ``sersic_n`` (bulge/spheroid index, quantised so GalSim can cache its tables), ``cos_incl`` (discs),
        ``axis_ratio`` (apparent b/a), ``pa_deg``, ``age`` (0 young .. 1 old stellar population),
        ``metallicity`` (standard score), ``burst`` (mass fraction of a recent burst), sizes
        (``disk_hlr_kpc``, ``bulge_hlr_kpc``), structure flags (``has_bar``, ``n_arms``, ``arm_pitch_deg``,
        ``n_clumps``, ``has_dust_lane``), and the stellar-population quantities of
        :func:`_stellar_populations`.
    """
    cls_index, log_mstar, z = _draw_mass_redshift(n, rng, d25_min_arcmin=d25_min_arcmin)
    cls = np.asarray(CLASSES, dtype=object)[cls_index]
    is_e, is_d, is_i, is_m = (cls_index == k for k in range(4))

    bt = np.select(
        [is_e, is_d, is_i, is_m],
        [
            rng.uniform(0.85, 1.0, n),
            draw_disc_bulge_fraction(log_mstar, rng),
            np.zeros(n),
            rng.uniform(0.3, 0.8, n),
        ],
    )
    sersic_n = np.select(
        [is_e, is_d],
        [draw_elliptical_sersic_n(log_mstar, rng), draw_bulge_sersic_n(bt, rng)],
        default=rng.choice([1.0, 1.5, 2.0], n),
    )
    cos_incl = np.where(is_d | is_i, rng.uniform(0, 1, n), 1.0)
    intrinsic_q_e = rng.uniform(0.55, 1.0, n)
    disk_q = np.sqrt(cos_incl**2 + DISK_THICKNESS**2 * (1 - cos_incl**2))
    # Apparent axis ratio: discs from the inclination (thick-disc formula) mixed with the bulge's roundness;
    # irregulars are thicker and lumpier.
    axis_ratio = np.select(
        [is_e, is_d, is_i],
        [intrinsic_q_e, (1 - bt) * disk_q + bt * np.maximum(disk_q, 0.6), np.maximum(disk_q, 0.35)],
        default=rng.uniform(0.4, 0.9, n),
    )

    scatter = {"elliptical": 0.12, "disk": 0.13, "irregular": 0.15, "merger": 0.13}
    log_hlr = np.empty(n)
    delta_log_hlr = np.empty(n)
    for k, name in enumerate(CLASSES):
        slope, pivot, intercept = _HLR_KPC_RELATION[name]
        sel = cls_index == k
        delta_log_hlr[sel] = rng.normal(0, scatter[name], sel.sum())
        log_hlr[sel] = slope * (log_mstar[sel] - pivot) + intercept + delta_log_hlr[sel]
    disk_hlr_kpc = 10**log_hlr
    bulge_hlr_kpc = np.where(is_e, disk_hlr_kpc, disk_hlr_kpc * draw_bulge_to_disc_hlr(n, rng))

    # Disc ages follow B/T measured from the mean B/T at the galaxy's mass (docs/mock.md row 7); early types
    # are older and more metal-rich when compact for their mass (row 5).
    early_age, early_met = early_type_residuals(np.where(is_e, delta_log_hlr, 0.0))
    disc_bt_offset = bt - mean_disc_bulge_fraction(log_mstar)
    age = np.select(
        [is_e, is_d, is_i, is_m],
        [
            rng.beta(9, 2, n) + early_age,
            np.clip(
                0.18 + 0.55 * (_DISC_BT_MEAN_BEFORE + disc_bt_offset) + rng.normal(0, 0.12, n), 0.02, 0.98
            ),
            rng.beta(1.5, 6, n),
            rng.beta(4, 4, n),
        ],
    )
    age = np.clip(age + 0.12 * (log_mstar - 10.3), 0.0, 1.0)
    metallicity = 0.6 * (log_mstar - 10.3) + rng.normal(0, 0.8, n) + early_met
    burst = np.select(
        [is_i, is_m, is_d],
        [rng.beta(2, 3, n), rng.beta(2, 4, n), rng.beta(0.6, 12, n)],
        default=rng.beta(0.5, 40, n),
    )
    rest_g_minus_r = -rest_colours(age, metallicity, burst)["r"]
    has_bar = is_d & (bt > BAR_MIN_BULGE_FRACTION) & (rng.uniform(0, 1, n) < bar_probability(rest_g_minus_r))

    n_arms = np.where(is_d & (bt < 0.7) & (rng.uniform(0, 1, n) < 0.85), rng.choice([2, 2, 2, 3, 4], n), 0)
    frame = pd.DataFrame(
        {
            "cls": cls,
            "z": z,
            "log_mstar": log_mstar,
            "bulge_fraction": bt,
            "sersic_n": sersic_n,
            "cos_incl": cos_incl,
            "axis_ratio": np.clip(axis_ratio, 0.1, 1.0),
            "pa_deg": rng.uniform(0, 180, n),
            "age": age,
            "metallicity": metallicity,
            "burst": burst,
            "disk_hlr_kpc": disk_hlr_kpc,
            "bulge_hlr_kpc": bulge_hlr_kpc,
            "has_bar": has_bar,
            "n_arms": n_arms.astype(np.int64),
            "arm_pitch_deg": rng.uniform(8, 35, n),
            "arm_strength": np.where(n_arms > 0, rng.uniform(0.15, 0.45, n) * (1 - bt), 0.0),
            "n_clumps": np.select(
                [is_i, is_m, is_d],
                [rng.integers(6, 20, n), rng.integers(4, 12, n), rng.integers(0, 8, n)],
                default=0,
            ).astype(np.int64),
            "clump_fraction": np.select(
                [is_i, is_m, is_d],
                [rng.uniform(0.2, 0.5, n), rng.uniform(0.1, 0.3, n), rng.uniform(0.0, 0.1, n) + 0.3 * burst],
                default=0.0,
            ),
            "companion_flux_ratio": np.where(is_m, rng.uniform(0.3, 1.0, n), 0.0),
            "companion_sep_kpc": np.where(is_m, rng.uniform(3, 15, n), 0.0),
            "nucleus_flux_fraction": draw_nucleus_flux_fraction(log_mstar, rng),
        }
    )
    frame["has_dust_lane"] = (frame["cls"] == "disk") & (frame["cos_incl"] < 0.35)
    return pd.concat([frame, _stellar_populations(frame, rng)], axis=1)


def _stellar_populations(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Intrinsic M/L, rest-frame colours and dust attenuation of each galaxy.

    Age moves a galaxy along a curved colour-M/L relation (d log M/L_g / d(g-i) from 0.46 for the youngest to
    3.4 for the oldest populations: colours saturate, M/L does not); metallicity moves it along a flatter
    line; a recent burst makes it much bluer for a modest drop in M/L; dust moves it along a flatter vector
    (0.4 A_g per E(g-i)) that steepens with inclination as the attenuation greys. These directions are close
    but not equal, so g-i alone leaves a scatter that morphology (inclination, clumps, bulges) reduces.
    """
    n = len(frame)
    age, met, burst = frame["age"].to_numpy(), frame["metallicity"].to_numpy(), frame["burst"].to_numpy()
    is_e = (frame["cls"] == "elliptical").to_numpy()
    is_d = (frame["cls"] == "disk").to_numpy()
    is_i = (frame["cls"] == "irregular").to_numpy()
    cos_incl = frame["cos_incl"].to_numpy()
    log_mstar = frame["log_mstar"].to_numpy()

    log_ml_int = (
        -0.28
        + 0.85 * age
        + 0.055 * met
        + 0.05 * (log_mstar - 10.5)
        + np.log10(1 - 0.65 * burst)
        + rng.normal(0, 0.025, n)
    )
    colour = rest_colours(age, met, burst)  # rest-frame, dust-free colours relative to g: m_band - m_g
    colour_noise = rng.normal(0, 0.015, (n, len(BANDS)))
    face_on_av = np.where(
        is_d,
        0.22 * 10 ** (0.25 * (log_mstar - 10.3)) * 10 ** rng.normal(0, 0.15, n),
        np.where(
            is_e,
            np.abs(rng.normal(0.04, 0.03, n)),
            np.where(is_i, rng.uniform(0.05, 0.3, n), rng.uniform(0.2, 0.6, n)),
        ),
    )
    mu = np.maximum(cos_incl, 0.12)
    a_g = np.where(is_d, face_on_av * (1 / mu) ** 0.65, face_on_av)
    greyness = 1 - 0.35 * (1 - cos_incl)  # screen-like face-on, greyer (mixed geometry) edge-on
    out = {"log_ml_g_intrinsic": log_ml_int, "a_g_mag": a_g}
    for k, band in enumerate(BANDS):
        out[f"rest_colour_{band}"] = colour[band] + (colour_noise[:, k] if band != "g" else 0.0)
        out[f"a_{band}_mag"] = a_g * DUST_RATIO[band] ** greyness
    return pd.DataFrame(out, index=frame.index)


def k_correction_mag(z: Array, rest_g_minus_i: Array, band: str) -> Array:
    """Approximate SDSS k-corrections (mag), linear in z with a colour-dependent slope.

    Red galaxies (rest g-i ~ 1.1) get K_g ~ 0.3 mag at z = 0.1, blue ones ~0.1 mag, close to the Chilingarian
    et al. (2010) polynomials over 0 < z < 0.3.
    """
    c = np.clip(rest_g_minus_i, 0.0, 1.5)
    slope = {
        "u": 0.6 + 2.2 * c,
        "g": -0.25 + 3.0 * c,
        "r": -0.15 + 1.5 * c,
        "i": -0.10 + 0.85 * c,
        "z": -0.10 + 0.55 * c,
    }[band]
    return z * slope


def _sersic_b(n: Array) -> Array:
    """b_n of a Sersic profile (Ciotti & Bertin 1999 expansion)."""
    return 2 * n - 1 / 3 + 4 / (405 * n) + 46 / (25515 * n**2)


def isophotal_radius_arcsec(
    components: list[tuple[Array, Array, Array, Array]],
    isophote_mag_arcsec2: float | Array,
    *,
    r_max_arcsec: float = 400.0,
    n_grid: int = 480,
) -> Array:
    """Major-axis radius where the summed surface brightness of Sersic components falls to an isophote.

    Parameters
    ----------
    components : list of (mag, hlr_major_arcsec, sersic_n, axis_ratio)
        Each a tuple of arrays of shape (N,): total magnitude, major-axis half-light radius, Sersic index and
        apparent axis ratio of one component (infinite magnitude for an absent component).
    isophote_mag_arcsec2 : float or (N,) array
        Surface brightness of the isophote in the components' magnitude system.

    Returns
    -------
    (N,) ndarray
        Radius in arcsec (0 where even the centre is fainter than the isophote).
    """
    from scipy.special import gamma

    radii = np.geomspace(0.05, r_max_arcsec, n_grid)
    total = np.zeros((components[0][0].size, n_grid))
    for mag, hlr, n, q in components:
        flux = 10 ** (-0.4 * np.asarray(mag, dtype=float))
        b = _sersic_b(n)
        norm = 2 * np.pi * n * np.exp(b) * b ** (-2 * n) * gamma(2 * n) * hlr**2 * q
        i_e = flux / norm
        total += i_e[:, None] * np.exp(
            -b[:, None] * ((radii[None, :] / hlr[:, None]) ** (1 / n[:, None]) - 1)
        )
    limit = 10 ** (-0.4 * np.asarray(isophote_mag_arcsec2, dtype=float))
    above = total >= np.atleast_1d(limit)[:, None] if np.ndim(limit) else total >= limit
    idx = np.where(above.any(axis=1), above.shape[1] - 1 - np.argmax(above[:, ::-1], axis=1), -1)
    return np.where(idx >= 0, radii[np.clip(idx, 0, None)], 0.0)


def observe_galaxies(
    frame: pd.DataFrame, rng: np.random.Generator, *, r_mag_limit: float = SDSS_SPECTRO_LIMIT_R
) -> pd.DataFrame:
    """Add what a survey sees: distances, apparent magnitudes, angular sizes, D25 and SED-fit quantities.

    Parameters
    ----------
    frame : pandas.DataFrame
        Output of :func:`draw_galaxies`.
    rng : numpy.random.Generator
    r_mag_limit : float
        Spectroscopic flux limit; D25 is computed only for galaxies brighter than it (NaN otherwise).

    Returns
    -------
    pandas.DataFrame
        ``frame`` plus: ``dist_lum_mpc``, ``kpc_per_arcsec``, true apparent magnitudes ``mag_<band>`` and
        fluxes ``flux_<band>_nmgy`` (dust and k-correction included), ``log_ml_g_target`` (observed-frame
        truth), ``log_ml_g_restframe_dusty``, ``k_g_mag``, angular sizes, ``d25_arcmin`` (true isophotal
        diameter in B), and SED-fit outputs ``chi2_r``, ``log_mstar_err`` and ``log_mstar_sed`` (the catalogue
        value).
    """
    out = frame.copy()
    n = len(out)
    z = out["z"].to_numpy()
    d_l = MOCK_COSMOLOGY.luminosity_distance(z).value
    kpc_per_arcsec = MOCK_COSMOLOGY.kpc_proper_per_arcmin(z).value / 60.0
    dist_mod = 5 * np.log10(d_l * 1e5)
    out["dist_lum_mpc"] = d_l
    out["kpc_per_arcsec"] = kpc_per_arcsec

    log_l_g_intrinsic = out["log_mstar"].to_numpy() - out["log_ml_g_intrinsic"].to_numpy()
    abs_g_intrinsic = M_SUN_AB["g"] - 2.5 * log_l_g_intrinsic
    rest_gi = -out["rest_colour_i"].to_numpy()
    for band in BANDS:
        k_corr = k_correction_mag(z, rest_gi, band)
        mag = (
            abs_g_intrinsic
            + out[f"rest_colour_{band}"].to_numpy()
            + out[f"a_{band}_mag"].to_numpy()
            + dist_mod
            + k_corr
        )
        out[f"mag_{band}"] = mag
        out[f"flux_{band}_nmgy"] = 10 ** (-0.4 * (mag - 22.5))
        if band == "g":
            out["k_g_mag"] = k_corr
    out["log_ml_g_restframe_dusty"] = out["log_ml_g_intrinsic"] + 0.4 * out["a_g_mag"]
    out["log_ml_g_target"] = out["log_ml_g_restframe_dusty"] + 0.4 * out["k_g_mag"]

    disk_hlr_arcsec = out["disk_hlr_kpc"].to_numpy() / kpc_per_arcsec
    bulge_hlr_arcsec = out["bulge_hlr_kpc"].to_numpy() / kpc_per_arcsec
    out["disk_hlr_arcsec"] = disk_hlr_arcsec
    out["bulge_hlr_arcsec"] = bulge_hlr_arcsec

    # D25: isophote at 25 B mag/arcsec^2 (B = g + 0.39 (g-r) + 0.21, Jester et al. 2005), on the observed
    # image.
    g_minus_r = out["mag_g"].to_numpy() - out["mag_r"].to_numpy()
    mag_b = out["mag_g"].to_numpy() + 0.39 * g_minus_r + 0.21
    bt = out["bulge_fraction"].to_numpy()
    is_e = (out["cls"] == "elliptical").to_numpy()
    with np.errstate(divide="ignore"):
        bulge_mag = np.where(bt > 0, mag_b - 2.5 * np.log10(np.where(bt > 0, bt, 1.0)), np.inf)
        disk_mag = np.where(bt < 1, mag_b - 2.5 * np.log10(np.where(bt < 1, 1 - bt, 1.0)), np.inf)
    q = out["axis_ratio"].to_numpy()
    disk_q = np.minimum(np.sqrt(out["cos_incl"].to_numpy() ** 2 + DISK_THICKNESS**2), 1.0)
    bright = out["mag_r"].to_numpy() < r_mag_limit
    r25 = np.full(n, np.nan)
    if bright.any():
        r25[bright] = isophotal_radius_arcsec(
            [
                (
                    bulge_mag[bright],
                    bulge_hlr_arcsec[bright],
                    out["sersic_n"].to_numpy()[bright],
                    np.where(is_e, q, np.maximum(q, 0.6))[bright],
                ),
                (disk_mag[bright], disk_hlr_arcsec[bright], np.ones(int(bright.sum())), disk_q[bright]),
            ],
            D25_ISOPHOTE_B_MAG_ARCSEC2,
        )
    out["d25_arcmin"] = 2 * r25 / 60.0

    # SED fit: uncertainty grows for faint galaxies; the reduced chi2 has a tail for complex, dusty systems.
    faintness = np.clip(out["mag_r"].to_numpy() - 15.0, -3, 4)
    log_err = np.log10(0.044) + 0.06 * faintness + rng.normal(0, 0.16, n)
    out["log_mstar_err"] = np.clip(10**log_err, 0.012, 0.25)
    out["log_mstar_sed"] = out["log_mstar"] + rng.normal(0, 1, n) * out["log_mstar_err"]
    complex_ = np.isin(out["cls"].to_numpy(), ["irregular", "merger"]).astype(float)
    edge_on = (out["cos_incl"].to_numpy() < 0.3).astype(float)
    p_tail = 0.11 + 0.15 * complex_ + 0.09 * edge_on
    tail = rng.uniform(0, 1, n) < p_tail
    chi2 = np.where(tail, 10 ** rng.uniform(np.log10(4.0), np.log10(40.0), n), 10 ** rng.normal(0.05, 0.2, n))
    out["chi2_r"] = chi2
    return out
