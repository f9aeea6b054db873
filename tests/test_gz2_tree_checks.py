"""GZ2 tree checks and targets: property tests on any valid input, and every failure the checks must catch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from morphomass import gz2
from morphomass.gz2 import (
    conditional_sum_errors,
    make_gz2_targets,
    normalise_conditional,
    obeys_tree,
    question_gates,
    tree_residuals,
)

#: The project's reference tree (a copy of shared/reference/gz2_tree.json), independent of gz2.py.
REFERENCE = json.loads((Path(__file__).parent / "data" / "gz2_tree.json").read_text(encoding="utf-8"))
QUESTION_ANSWERS = [[gz2.answer_index(a["answer_id"]) for a in q["answers"]] for q in REFERENCE["questions"]]
#: Gating answer of each question per the reference ("t01.a02" -> index of a02); None for t01 and t06.
GATE_INDEX = [
    None
    if q["gating_answer_for_unconditional_prob"] is None
    else gz2.answer_index(q["gating_answer_for_unconditional_prob"].split(".")[1])
    for q in REFERENCE["questions"]
]
T06 = [q["task"] for q in REFERENCE["questions"]].index("t06")
A03 = gz2.answer_index("a03")


def _reference_gate(unconditional: np.ndarray, q: int) -> float:
    if q == T06:  # asked unless the classification ended at "star or artifact" (reference discrepancy notes)
        return 1.0 - unconditional[A03]
    return 1.0 if GATE_INDEX[q] is None else unconditional[GATE_INDEX[q]]


def _question(n: int) -> st.SearchStrategy[tuple[str, np.ndarray]]:
    """One question's conditional fractions: voted (a distribution), or not voted (all 0 or all NaN)."""
    weights = st.lists(st.floats(0.0, 1.0, allow_subnormal=False), min_size=n, max_size=n).filter(
        lambda w: sum(w) > 1e-3
    )
    voted = weights.map(lambda w: ("voted", np.array(w) / sum(w)))
    return st.one_of(voted, voted, st.sampled_from([("zero", np.zeros(n)), ("nan", np.full(n, np.nan))]))


conditional_tables = st.tuples(*(_question(len(idx)) for idx in QUESTION_ANSWERS), st.booleans())


def _assemble(draw: tuple) -> tuple[np.ndarray, list[str]]:
    """37-vector in ANSWERS order (optionally rounded to 3 decimals as Hart+16) and each question's state."""
    *questions, rounded = draw
    cond = np.empty(len(gz2.ANSWERS))
    for idx, (_, values) in zip(QUESTION_ANSWERS, questions, strict=True):
        cond[idx] = np.round(values, 3) if rounded else values
    return cond, [state for state, _ in questions]


@settings(max_examples=200, deadline=None)
@given(draw=conditional_tables)
def test_targets_obey_the_tree_for_any_valid_input(draw: tuple) -> None:
    cond, states = _assemble(draw)
    assert not conditional_sum_errors(cond).any()  # valid input (rounding included) passes the reader's check
    out, reached_unvoted = make_gz2_targets(cond)
    assert out.shape == (37,)
    assert np.all((out >= 0) & (out <= 1 + 1e-12))
    assert obeys_tree(out, atol=1e-9)
    normalised, _ = normalise_conditional(cond)
    for q, idx in enumerate(QUESTION_ANSWERS):
        gate = _reference_gate(out, q)
        # answers of each question sum to the probability of its parent answer (the property)
        assert out[idx].sum() == pytest.approx(gate, abs=1e-9)
        if states[q] == "voted":  # each answer is its (renormalised) vote fraction times the gate
            np.testing.assert_allclose(out[idx], cond[idx] / cond[idx].sum() * gate, atol=1e-9)
        else:  # a question nobody was asked shares its probability equally (0 if it cannot be reached)
            np.testing.assert_allclose(out[idx], gate / len(idx), atol=1e-12)
            np.testing.assert_allclose(normalised[idx], 1 / len(idx))
    expected_flag = any(s != "voted" and _reference_gate(out, q) > 0 for q, s in enumerate(states))
    assert bool(reached_unvoted) == expected_flag


@settings(max_examples=100, deadline=None)
@given(draw=conditional_tables, answer=st.integers(0, 36), delta=st.floats(1e-4, 0.5))
def test_any_single_answer_change_breaks_the_tree(draw: tuple, answer: int, delta: float) -> None:
    cond, _ = _assemble(draw)
    out, _ = make_gz2_targets(cond)
    broken = out.copy()
    broken[answer] += delta if broken[answer] + delta <= 1 else -delta  # stays in [0, 1]: delta <= 0.5
    assert not obeys_tree(broken, atol=1e-5)
    residuals = tree_residuals(broken)
    owner = next(q for q, idx in enumerate(QUESTION_ANSWERS) if answer in idx)
    assert abs(residuals[owner]) > 1e-5


@settings(max_examples=40, deadline=None)
@given(batch=st.lists(conditional_tables, min_size=1, max_size=5))
def test_batches_are_checked_row_by_row(batch: list[tuple]) -> None:
    cond = np.stack([_assemble(d)[0] for d in batch])
    out, flags = make_gz2_targets(cond)
    assert out.shape == cond.shape and flags.shape == (len(batch),)
    for row_in, row_out, flag in zip(cond, out, flags, strict=True):
        single, single_flag = make_gz2_targets(row_in)
        np.testing.assert_allclose(row_out, single)
        assert flag == single_flag
    assert obeys_tree(out, atol=1e-9).all()


def test_conditional_sum_errors_flag_only_the_bad_question() -> None:
    uniform = tuple(("voted", np.full(len(idx), 1 / len(idx))) for idx in QUESTION_ANSWERS)
    cond, _ = _assemble((*uniform, True))
    assert not conditional_sum_errors(cond).any()
    t03 = QUESTION_ANSWERS[2]
    bad = cond.copy()
    bad[t03[0]] += 0.05
    errors = conditional_sum_errors(bad)
    assert errors.tolist() == [q == 2 for q in range(11)]
    assert conditional_sum_errors(bad, atol=0.06).sum() == 0
    bad[t03] = np.nan  # not asked: fine
    assert not conditional_sum_errors(bad).any()


def test_obeys_tree_rejects_out_of_range_and_nan() -> None:
    out, _ = make_gz2_targets(np.zeros(37))  # nothing voted anywhere: uniform everywhere
    assert obeys_tree(out)
    assert out[:3] == pytest.approx([1 / 3] * 3)
    assert question_gates(out)[T06] == pytest.approx(2 / 3)
    with_nan = out.copy()
    with_nan[20] = np.nan
    assert not obeys_tree(with_nan)
    negative = out.copy()
    negative[QUESTION_ANSWERS[1]] = [out[1] + 0.1, -0.1]  # sums still right, but a negative probability
    assert np.abs(tree_residuals(negative)[1]) < 1e-12
    assert not obeys_tree(negative)


def test_shape_errors() -> None:
    for func in (obeys_tree, tree_residuals, question_gates):
        with pytest.raises(ValueError, match=r"must have 37 answers in its last axis, got shape \(2, 36\)"):
            func(np.zeros((2, 36)))
    with pytest.raises(ValueError, match=r"conditional must have 37 answers"):
        make_gz2_targets(np.zeros(5))
