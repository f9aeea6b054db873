"""Galaxy Zoo 2 votes for mock galaxies: volunteers walk the decision tree (gz2.py) from the morphology.

Each galaxy gets per-question answer probabilities from its true structure, blurred by how visible that
structure is at its distance and apparent size (features fade with redshift, as in real GZ2 data; Hart et al.
2016). Volunteers are simulated through the tree: the number who answer a question is the number who chose its
gating answer, so vote counts obey the tree exactly like real ones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from morphomass import gz2

__all__ = ["conditional_answer_probabilities", "simulate_votes"]


def _softmax_rows(logits: NDArray[np.float64]) -> NDArray[np.float64]:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def conditional_answer_probabilities(frame: pd.DataFrame, rng: np.random.Generator) -> NDArray[np.float64]:
    """Per-question answer probabilities of a typical volunteer, shape (N, 37) in :data:`gz2.ANSWERS` order.

    Parameters
    ----------
    frame : pandas.DataFrame
        Mock galaxies with ``cls``, ``z``, ``bulge_fraction``, ``cos_incl``, ``axis_ratio``, ``has_bar``,
        ``n_arms``, ``arm_pitch_deg``, ``arm_strength``, ``has_dust_lane`` and ``d25_arcmin``.
    rng : numpy.random.Generator
        For the galaxy-to-galaxy scatter of how volunteers perceive a galaxy.
    """
    n = len(frame)
    cls = frame["cls"].to_numpy()
    is_e, is_d = cls == "elliptical", cls == "disk"
    is_i, is_m = cls == "irregular", cls == "merger"
    bt = frame["bulge_fraction"].to_numpy()
    cos_i = frame["cos_incl"].to_numpy()
    q = frame["axis_ratio"].to_numpy()
    # Visibility of internal structure: 1 nearby and large, falling with redshift and small apparent size.
    size = np.nan_to_num(frame["d25_arcmin"].to_numpy(), nan=0.3)
    vis = np.clip(np.exp(-frame["z"].to_numpy() / 0.12) * np.clip(size / 0.8, 0.3, 1.0) ** 0.5, 0.05, 1.0)
    jitter = rng.normal(0, 0.35, (n, 8))
    p = np.zeros((n, len(gz2.ANSWERS)))

    def put(question: str, probs: NDArray[np.float64]) -> None:
        q_obj = next(x for x in gz2.QUESTIONS if x.task == question)
        idx = [gz2.answer_index(a.answer_id) for a in q_obj.answers]
        p[:, idx] = probs

    edge_on = np.clip((0.45 - cos_i) / 0.25, 0, 1)
    feat_true = np.select(
        [is_e, is_d, is_i, is_m],
        [0.07 + 0 * bt, 0.35 + 0.6 * (1 - bt) + 0.4 * edge_on, np.full(n, 0.8), np.full(n, 0.75)],
    )
    feat = np.clip(feat_true * (0.45 + 0.55 * vis) + 0.1 * (1 - vis) * 0, 0.01, 0.97)
    logit_f = np.log(feat / (1 - feat)) + jitter[:, 0]
    put("t01", _softmax_rows(np.stack([np.zeros(n), logit_f, np.full(n, -4.0)], axis=1)))
    put("t02", _softmax_rows(np.stack([6 * (edge_on - 0.5) + jitter[:, 1], np.zeros(n)], axis=1)))
    bar = np.where(frame["has_bar"].to_numpy(), 1.2 * vis, -2.0) + jitter[:, 2]
    put("t03", _softmax_rows(np.stack([bar, np.zeros(n)], axis=1)))
    arms = np.where(frame["n_arms"].to_numpy() > 0, 4 * frame["arm_strength"].to_numpy() * vis + 0.5, -1.8)
    put("t04", _softmax_rows(np.stack([arms + jitter[:, 3], np.zeros(n)], axis=1)))
    bulge_levels = np.array([0.02, 0.12, 0.35, 0.7])
    put("t05", _softmax_rows(-((bt[:, None] - bulge_levels[None, :]) ** 2) / 0.02 + jitter[:, 4:5]))
    odd = np.select([is_i | is_m, frame["has_dust_lane"].to_numpy()], [1.5, 0.0], default=-2.0) + jitter[:, 5]
    put("t06", _softmax_rows(np.stack([odd, np.zeros(n)], axis=1)))
    round_levels = np.array([0.9, 0.65, 0.35])
    put("t07", _softmax_rows(-((q[:, None] - round_levels[None, :]) ** 2) / 0.015))
    odd_kind = np.full((n, 7), -1.0)
    odd_kind[is_i, 3] = 2.0  # irregular
    odd_kind[is_m, 5] = 2.0  # merger
    odd_kind[is_m, 2] = 1.0  # disturbed
    odd_kind[frame["has_dust_lane"].to_numpy(), 6] = 2.0  # dust lane
    put("t08", _softmax_rows(odd_kind + rng.normal(0, 0.5, (n, 7))))
    put("t09", _softmax_rows(np.stack([4 * (bt - 0.15), np.full(n, -1.5), 4 * (0.1 - bt)], axis=1)))
    pitch = frame["arm_pitch_deg"].to_numpy()
    put("t10", _softmax_rows(-((pitch[:, None] - np.array([10.0, 20.0, 30.0])[None, :]) ** 2) / 40.0))
    n_arms = frame["n_arms"].to_numpy()
    arm_logits = np.full((n, 6), -2.0)
    for col, count in enumerate([1, 2, 3, 4]):
        arm_logits[n_arms == count, col] = 1.5
    arm_logits[n_arms > 4, 4] = 1.5
    arm_logits[:, 5] = 1.5 * (1 - vis) - 0.5
    put("t11", _softmax_rows(arm_logits))
    return p


def simulate_votes(
    conditional: NDArray[np.float64], n_classifiers: NDArray[np.int64], rng: np.random.Generator
) -> NDArray[np.int64]:
    """Vote counts per answer from volunteers walking the GZ2 tree.

    Parameters
    ----------
    conditional : (N, 37) array
        Per-question answer probabilities (:func:`conditional_answer_probabilities`).
    n_classifiers : (N,) int array
        Volunteers who classified each galaxy (all answer task 01).
    rng : numpy.random.Generator

    Returns
    -------
    (N, 37) int64 array
        Vote counts; a question's counts sum to the count of its gating answer (task 06: all but
        star/artifact).
    """
    counts = np.zeros(conditional.shape, dtype=np.int64)
    for question in gz2.QUESTIONS:
        idx = [gz2.answer_index(a.answer_id) for a in question.answers]
        if question.parent is not None:
            asked = counts[:, gz2.answer_index(question.parent)]
        elif question.asked_unless is not None:
            asked = n_classifiers - counts[:, gz2.answer_index(question.asked_unless)]
        else:
            asked = n_classifiers
        probs = conditional[:, idx]
        probs = probs / probs.sum(axis=1, keepdims=True)
        counts[:, idx] = rng.multinomial(asked, probs)
    return counts
