"""The Galaxy Zoo 2 decision tree: one source of truth for questions, answers and their parents.

Willett et al. (2013) Table 1 and Hart et al. (2016) column names (reference/gz2_tree.json). Answers are
listed in the Hart+16 column order, which is also the order of the 37 network outputs. The parent of a
question is the answer whose probability gates it (the probability that the question was asked). Task 06
("anything odd?") is asked after every classification that did not end at "star or artifact", so its gate is
``1 - p(a03)`` (see the discrepancy notes of reference/gz2_tree.json); it is represented by ``parent=None``
with ``asked_unless="a03"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "ANSWERS",
    "ANSWER_COLUMNS",
    "QUESTIONS",
    "Answer",
    "Question",
    "CONDITIONAL_SUM_ATOL",
    "answer_index",
    "conditional_sum_errors",
    "hart16_column",
    "make_gz2_targets",
    "normalise_conditional",
    "obeys_tree",
    "question_gates",
    "question_sums",
    "tree_residuals",
    "unconditional_probabilities",
]


@dataclass(frozen=True)
class Answer:
    """One answer: its GZ2 id (``a01``), short name and the Hart+16 column stem."""

    answer_id: str
    name: str
    task: str
    prefix: str

    @property
    def stem(self) -> str:
        """Hart+16 column stem, e.g. ``t01_smooth_or_features_a01_smooth``."""
        return f"{self.prefix}_{self.answer_id}_{self.name}"

    @property
    def column(self) -> str:
        """Column name used in morphomass tables: ``gz2_p_<task>_<answer>``, e.g. ``gz2_p_t01_a01``."""
        return f"gz2_p_{self.task}_{self.answer_id}"


@dataclass(frozen=True)
class Question:
    """One question (task), its answers and the answer that gates it."""

    task: str
    prefix: str
    answers: tuple[Answer, ...]
    parent: str | None
    asked_unless: str | None = None


def _question(
    task: str, prefix: str, names: list[tuple[str, str]], parent: str | None, **kw: str
) -> Question:
    answers = tuple(Answer(aid, name, task, prefix) for aid, name in names)
    return Question(task, prefix, answers, parent, **kw)


QUESTIONS: tuple[Question, ...] = (
    _question(
        "t01",
        "t01_smooth_or_features",
        [("a01", "smooth"), ("a02", "features_or_disk"), ("a03", "star_or_artifact")],
        None,
    ),
    _question("t02", "t02_edgeon", [("a04", "yes"), ("a05", "no")], "a02"),
    _question("t03", "t03_bar", [("a06", "bar"), ("a07", "no_bar")], "a05"),
    _question("t04", "t04_spiral", [("a08", "spiral"), ("a09", "no_spiral")], "a05"),
    _question(
        "t05",
        "t05_bulge_prominence",
        [("a10", "no_bulge"), ("a11", "just_noticeable"), ("a12", "obvious"), ("a13", "dominant")],
        "a05",
    ),
    _question("t06", "t06_odd", [("a14", "yes"), ("a15", "no")], None, asked_unless="a03"),
    _question(
        "t07",
        "t07_rounded",
        [("a16", "completely_round"), ("a17", "in_between"), ("a18", "cigar_shaped")],
        "a01",
    ),
    _question(
        "t08",
        "t08_odd_feature",
        [
            ("a19", "ring"),
            ("a20", "lens_or_arc"),
            ("a21", "disturbed"),
            ("a22", "irregular"),
            ("a23", "other"),
            ("a24", "merger"),
            ("a38", "dust_lane"),
        ],
        "a14",
    ),
    _question("t09", "t09_bulge_shape", [("a25", "rounded"), ("a26", "boxy"), ("a27", "no_bulge")], "a04"),
    _question("t10", "t10_arms_winding", [("a28", "tight"), ("a29", "medium"), ("a30", "loose")], "a08"),
    _question(
        "t11",
        "t11_arms_number",
        [
            ("a31", "1"),
            ("a32", "2"),
            ("a33", "3"),
            ("a34", "4"),
            ("a36", "more_than_4"),
            ("a37", "cant_tell"),
        ],
        "a08",
    ),
)

ANSWERS: tuple[Answer, ...] = tuple(a for q in QUESTIONS for a in q.answers)
#: ``gz2_p_<task>_<answer>`` for the 37 answers, in network-output order.
ANSWER_COLUMNS: tuple[str, ...] = tuple(a.column for a in ANSWERS)
HART16_SUFFIXES: tuple[str, ...] = ("count", "weight", "fraction", "weighted_fraction", "debiased", "flag")
HART16_LEADING_COLUMNS: tuple[str, ...] = (
    "dr7objid",
    "ra",
    "dec",
    "rastring",
    "decstring",
    "sample",
    "gz2_class",
    "total_classifications",
    "total_votes",
)


def answer_index(answer_id: str) -> int:
    """Position (0-36) of an answer id such as ``"a38"`` in :data:`ANSWERS`."""
    for i, answer in enumerate(ANSWERS):
        if answer.answer_id == answer_id:
            return i
    msg = f"unknown GZ2 answer id {answer_id!r}"
    raise KeyError(msg)


def hart16_column(answer: Answer, suffix: str) -> str:
    """Hart+16 column name of an answer, e.g. ``t01_smooth_or_features_a01_smooth_weighted_fraction``."""
    if suffix not in HART16_SUFFIXES:
        msg = f"unknown Hart+16 suffix {suffix!r}; expected one of {HART16_SUFFIXES}"
        raise KeyError(msg)
    return f"{answer.stem}_{suffix}"


def hart16_columns() -> list[str]:
    """All 231 Hart+16 column names in file order."""
    return list(HART16_LEADING_COLUMNS) + [hart16_column(a, s) for a in ANSWERS for s in HART16_SUFFIXES]


def unconditional_probabilities(conditional: NDArray[np.floating]) -> NDArray[np.float64]:
    """Convert per-question (conditional) vote fractions into unconditional answer probabilities.

    Each answer's fraction is multiplied by the probability that its question was asked, i.e. the
    unconditional probability of the gating answer (task 06: ``1 - p(a03)``), walking the tree from the root.

    Parameters
    ----------
    conditional : (..., 37) array
        Weighted vote fractions in :data:`ANSWERS` order; within each question they sum to 1 (or are all 0/NaN
        for a question nobody was asked).

    Returns
    -------
    (..., 37) ndarray of float64
        Answers of each question sum to the probability that the question was asked. NaN inputs are read as 0.
    """
    cond = np.nan_to_num(np.asarray(conditional, dtype=np.float64), nan=0.0)
    if cond.shape[-1] != len(ANSWERS):
        msg = f"expected {len(ANSWERS)} answers in the last axis, got shape {cond.shape}"
        raise ValueError(msg)
    out = np.empty_like(cond)
    for question in QUESTIONS:  # QUESTIONS is in tree order: every parent precedes its children
        idx = [answer_index(a.answer_id) for a in question.answers]
        if question.parent is not None:
            gate = out[..., answer_index(question.parent)]
        elif question.asked_unless is not None:
            gate = 1.0 - out[..., answer_index(question.asked_unless)]
        else:
            gate = np.ones(cond.shape[:-1])
        out[..., idx] = cond[..., idx] * gate[..., None]
    return out


# --- Checks that answer vectors obey the tree, and making CNN targets from Hart+16 fractions ---------------
#
# Conditional fractions (Hart+16): within each question the answers sum to 1, or are all zero/NaN when nobody
# was asked. Unconditional probabilities (CNN targets, SPEC D8/N1): within each question they sum to the
# probability that the question was asked (its gating answer; 1 - p(a03) for t06, 1 for t01). Any leading
# batch shape.


#: Default tolerance on the per-question sums of tabulated conditional fractions (Hart+16 rounds to 1e-3).
CONDITIONAL_SUM_ATOL = 0.01

#: Answer positions (into the 37-vector) of each question, in :data:`morphomass.QUESTIONS` order.
_QUESTION_INDEX: tuple[NDArray[np.intp], ...] = tuple(
    np.array([answer_index(a.answer_id) for a in q.answers], dtype=np.intp) for q in QUESTIONS
)


def _as_answers(values: NDArray[np.floating], name: str) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0 or array.shape[-1] != len(ANSWERS):
        msg = f"{name} must have {len(ANSWERS)} answers in its last axis, got shape {array.shape}"
        raise ValueError(msg)
    return array


def question_sums(values: NDArray[np.floating]) -> NDArray[np.float64]:
    """Sum of the answers of each question (NaN counted as 0).

    Parameters
    ----------
    values : (..., 37) array
        Conditional or unconditional answer values.

    Returns
    -------
    (..., 11) ndarray of float64
        In :data:`morphomass.QUESTIONS` order.
    """
    array = np.nan_to_num(_as_answers(values, "values"), nan=0.0)
    return np.stack([array[..., idx].sum(axis=-1) for idx in _QUESTION_INDEX], axis=-1)


def question_gates(unconditional: NDArray[np.floating]) -> NDArray[np.float64]:
    """Probability that each question was asked, read off an unconditional vector.

    Parameters
    ----------
    unconditional : (..., 37) array

    Returns
    -------
    (..., 11) ndarray of float64
        1 for t01, ``1 - p(a03)`` for t06, the unconditional probability of the gating answer otherwise.
    """
    array = _as_answers(unconditional, "unconditional")
    gates = []
    for question in QUESTIONS:
        if question.parent is not None:
            gates.append(array[..., answer_index(question.parent)])
        elif question.asked_unless is not None:
            gates.append(1.0 - array[..., answer_index(question.asked_unless)])
        else:
            gates.append(np.ones(array.shape[:-1]))
    return np.stack(gates, axis=-1)


def tree_residuals(unconditional: NDArray[np.floating]) -> NDArray[np.float64]:
    """Per-question sum of the answers minus the probability that the question was asked.

    Parameters
    ----------
    unconditional : (..., 37) array

    Returns
    -------
    (..., 11) ndarray of float64
        Zero everywhere for a vector that obeys the tree (NaN where the input has NaN).
    """
    array = _as_answers(unconditional, "unconditional")
    sums = np.stack([array[..., idx].sum(axis=-1) for idx in _QUESTION_INDEX], axis=-1)
    return sums - question_gates(array)


def obeys_tree(unconditional: NDArray[np.floating], *, atol: float = 1e-6) -> NDArray[np.bool_]:
    """Tell whether unconditional probability vectors obey the GZ2 tree.

    A vector obeys it when every value is finite and in [0, 1] (within ``atol``) and the answers of every
    question sum to the probability that the question was asked (within ``atol``).

    Parameters
    ----------
    unconditional : (..., 37) array
    atol : float
        Absolute tolerance.

    Returns
    -------
    (...) ndarray of bool
    """
    array = _as_answers(unconditional, "unconditional")
    in_range = np.all(np.isfinite(array) & (array >= -atol) & (array <= 1 + atol), axis=-1)
    with np.errstate(invalid="ignore"):
        balanced = np.all(np.abs(tree_residuals(array)) <= atol, axis=-1)
    return in_range & balanced


def conditional_sum_errors(
    conditional: NDArray[np.floating], *, atol: float = CONDITIONAL_SUM_ATOL
) -> NDArray[np.bool_]:
    """Find questions whose conditional fractions neither sum to 1 nor are all zero.

    Parameters
    ----------
    conditional : (..., 37) array
        Per-question fractions; NaN counts as 0 (a question nobody was asked).
    atol : float
        Tolerance on the sum (tabulated fractions are rounded).

    Returns
    -------
    (..., 11) ndarray of bool
        True where a question is malformed.
    """
    sums = question_sums(conditional)
    return ~((np.abs(sums - 1.0) <= atol) | (sums == 0.0))


def normalise_conditional(
    conditional: NDArray[np.floating],
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Make every question's conditional fractions sum to exactly 1.

    Questions with votes are divided by their sum (removing the table's rounding). A question without votes
    (all zero or NaN) gets equal fractions: its unconditional probabilities then come out as its gate shared
    equally, which is 0 when the question could not be reached and keeps the tree exact when it could (a few
    GZ2 classifications stop early).

    Parameters
    ----------
    conditional : (..., 37) array
        Fractions in [0, 1] per question.

    Returns
    -------
    normalised : (..., 37) ndarray of float64
    unvoted : (..., 11) ndarray of bool
        True for the questions that had no votes.
    """
    array = np.nan_to_num(_as_answers(conditional, "conditional"), nan=0.0)
    out = np.empty_like(array)
    unvoted = np.empty(array.shape[:-1] + (len(_QUESTION_INDEX),), dtype=bool)
    for q, idx in enumerate(_QUESTION_INDEX):
        part = array[..., idx]
        total = part.sum(axis=-1, keepdims=True)
        empty = total[..., 0] <= 0.0
        share = part / np.where(empty[..., None], 1.0, total)
        out[..., idx] = np.where(empty[..., None], 1.0 / idx.size, share)
        unvoted[..., q] = empty
    return out, unvoted


def make_gz2_targets(conditional: NDArray[np.floating]) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Unconditional GZ2 probabilities (SPEC D8) from tabulated conditional fractions.

    Parameters
    ----------
    conditional : (..., 37) array
        Per-question fractions (Hart+16 ``*_weighted_fraction``) in :data:`morphomass.ANSWERS` order.

    Returns
    -------
    unconditional : (..., 37) ndarray of float64
        Obeys the tree exactly (:func:`obeys_tree`).
    reached_unvoted : (...) ndarray of bool
        True where a question that could be reached (gate > 0) had no votes, so its answers were shared
        equally.
    """
    normalised, unvoted = normalise_conditional(conditional)
    unconditional = unconditional_probabilities(normalised)
    reached_unvoted = np.any(unvoted & (question_gates(unconditional) > 0), axis=-1)
    return unconditional, reached_unvoted
