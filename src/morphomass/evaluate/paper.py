"""The numbers Dobbels et al. 2019 report (test set, SPEC E1-E11), for the report's side-by-side tables."""

from __future__ import annotations

__all__ = ["PAPER_BOOTSTRAP", "PAPER_KS_PVALUE", "PAPER_METRICS", "PAPER_PER_CLASS", "TABLE1_ROWS"]

#: Experiment -> metric -> value, as published (None where the paper gives no number).
PAPER_METRICS: dict[str, dict[str, float]] = {
    "constant": {"l1": 6.52},
    "reference_lg_z": {"l1": 4.52, "rmsle": 0.227, "frac_within_015dex": 0.551},
    "g_morph": {"l1": 2.29, "l2": 3.39, "rmsle": 0.124, "median_l1": 1.70, "frac_within_015dex": 0.854},
    "ablation_no_cnn4": {"l1": 2.41},
    "ablation_no_cnn123": {"l1": 2.37},
    "ablation_no_luminosity": {"l1": 2.32},
    "ablation_no_distance": {"l1": 2.67},
    "ablation_no_cnn": {"l1": 3.38},
    "g_morph_top50": {"l1": 2.29},
    "g_morph_half_train": {"l1": 2.31},
    "g_morph_no_total_luminosity": {"l1": 2.31},
    "g_morph_gz2_truth": {"l1": 2.25},
    "gi_powerlaw": {
        "l1": 1.90,
        "l2": 3.04,
        "rmsle": 0.084,
        "median_l1": 1.39,
        "frac_over_015dex": 0.051,
        "frac_under_015dex": 0.018,
    },
    "gi_zibetti09": {"l1": 7.47},
    "gi_gbm": {"l1": 1.26, "frac_within_015dex": 0.977},
    "gi_morph": {"l1": 1.12, "l2": 1.52, "rmsle": 0.053, "median_l1": 0.85},
    "loss_g_morph_l1": {"l1": 2.29, "l2": 3.39, "rmsle": 0.124, "median_l1": 1.70},
    "loss_g_morph_l2": {"l1": 2.34, "l2": 3.36, "rmsle": 0.128, "median_l1": 1.76},
    "loss_g_morph_rmsle": {"l1": 2.41, "l2": 3.68, "rmsle": 0.122, "median_l1": 1.70},
    "loss_gi_powerlaw_l1": {"l1": 1.90, "l2": 3.04, "rmsle": 0.084, "median_l1": 1.39},
    "loss_gi_powerlaw_l2": {"l1": 2.05, "l2": 2.84, "rmsle": 0.092, "median_l1": 1.64},
    "loss_gi_powerlaw_rmsle": {"l1": 1.91, "l2": 3.20, "rmsle": 0.082, "median_l1": 1.36},
    "loss_gi_morph_l1": {"l1": 1.12, "l2": 1.52, "rmsle": 0.053, "median_l1": 0.85},
    "loss_gi_morph_l2": {"l1": 1.12, "l2": 1.52, "rmsle": 0.052, "median_l1": 0.86},
    "loss_gi_morph_rmsle": {"l1": 1.13, "l2": 1.53, "rmsle": 0.053, "median_l1": 0.86},
}

#: E8: one-sided KS p-value and bootstrap mean L1~ +- std of gi_morph vs gi_gbm.
PAPER_KS_PVALUE: dict[str, float] = {"gi_morph_vs_gi_gbm": 7.6e-9}
PAPER_BOOTSTRAP: dict[str, dict[str, tuple[float, float]]] = {
    "gi_morph_vs_gi_gbm": {"gi_morph": (1.12, 0.01), "gi_gbm": (1.26, 0.01)},
}

#: E9: class -> (L1~ without morphology (gi_gbm), with morphology (gi_morph)).
PAPER_PER_CLASS: dict[str, tuple[float, float]] = {
    "irregular": (1.15, 1.08),
    "edge_on": (1.52, 1.14),
    "disk": (1.31, 1.18),
    "elliptical": (1.14, 1.07),
}

#: Table 1: experiment -> which feature groups it uses (CNN 1-3, CNN 4, luminosity, distance, classical).
TABLE1_ROWS: dict[str, tuple[bool, bool, bool, bool, bool]] = {
    "g_morph": (True, True, True, True, False),
    "ablation_no_cnn123": (False, True, True, True, False),
    "ablation_no_cnn4": (True, False, True, True, False),
    "ablation_no_luminosity": (True, True, False, True, False),
    "ablation_no_distance": (True, True, True, False, False),
    "ablation_no_cnn": (False, False, True, True, False),
    # beyond the paper: the classical morphology (morph_*) added to the full model; against this row,
    # g_morph is the ablation "no classical morphology" and g_classical "no CNN morphology"
    "g_morph_classical": (True, True, True, True, True),
    "g_classical": (False, False, True, True, True),
}
