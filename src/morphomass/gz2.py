"""The Galaxy Zoo 2 decision tree: one source of truth for questions, answers and their parents.

Willett et al. (2013) Table 1 and Hart et al. (2016) column names (reference/gz2_tree.json). Answers are listed in the
Hart+16 column order, which is also the order of the 37 network outputs. The parent of a question is the answer whose
probability gates it (the probability that the question was asked). Task 06 ("anything odd?") is asked after every
classification that did not end at "star or artifact", so its gate is ``1 - p(a03)`` (see the discrepancy notes of
reference/gz2_tree.json); it is represented by ``parent=None`` with ``asked_unless="a03"``.
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
    "answer_index",
    "hart16_column",
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


def _question(task: str, prefix: str, names: list[tuple[str, str]], parent: str | None, **kw: str) -> Question:
    answers = tuple(Answer(aid, name, task, prefix) for aid, name in names)
    return Question(task, prefix, answers, parent, **kw)


QUESTIONS: tuple[Question, ...] = (
    _question("t01", "t01_smooth_or_features",
              [("a01", "smooth"), ("a02", "features_or_disk"), ("a03", "star_or_artifact")], None),
    _question("t02", "t02_edgeon", [("a04", "yes"), ("a05", "no")], "a02"),
    _question("t03", "t03_bar", [("a06", "bar"), ("a07", "no_bar")], "a05"),
    _question("t04", "t04_spiral", [("a08", "spiral"), ("a09", "no_spiral")], "a05"),
    _question("t05", "t05_bulge_prominence",
              [("a10", "no_bulge"), ("a11", "just_noticeable"), ("a12", "obvious"), ("a13", "dominant")], "a05"),
    _question("t06", "t06_odd", [("a14", "yes"), ("a15", "no")], None, asked_unless="a03"),
    _question("t07", "t07_rounded",
              [("a16", "completely_round"), ("a17", "in_between"), ("a18", "cigar_shaped")], "a01"),
    _question("t08", "t08_odd_feature",
              [("a19", "ring"), ("a20", "lens_or_arc"), ("a21", "disturbed"), ("a22", "irregular"),
               ("a23", "other"), ("a24", "merger"), ("a38", "dust_lane")], "a14"),
    _question("t09", "t09_bulge_shape", [("a25", "rounded"), ("a26", "boxy"), ("a27", "no_bulge")], "a04"),
    _question("t10", "t10_arms_winding", [("a28", "tight"), ("a29", "medium"), ("a30", "loose")], "a08"),
    _question("t11", "t11_arms_number",
              [("a31", "1"), ("a32", "2"), ("a33", "3"), ("a34", "4"), ("a36", "more_than_4"),
               ("a37", "cant_tell")], "a08"),
)

ANSWERS: tuple[Answer, ...] = tuple(a for q in QUESTIONS for a in q.answers)
#: ``gz2_p_<task>_<answer>`` for the 37 answers, in network-output order.
ANSWER_COLUMNS: tuple[str, ...] = tuple(a.column for a in ANSWERS)
HART16_SUFFIXES: tuple[str, ...] = ("count", "weight", "fraction", "weighted_fraction", "debiased", "flag")
HART16_LEADING_COLUMNS: tuple[str, ...] = (
    "dr7objid", "ra", "dec", "rastring", "decstring", "sample", "gz2_class", "total_classifications", "total_votes",
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

    Each answer's fraction is multiplied by the probability that its question was asked, i.e. the unconditional
    probability of the gating answer (task 06: ``1 - p(a03)``), walking the tree from the root.

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
