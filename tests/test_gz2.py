"""The GZ2 decision tree against the reference table, and the conditional -> unconditional conversion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from morphomass import gz2

#: Copy of the project's reference table (shared/reference/gz2_tree.json), independent of gz2.py.
REFERENCE: dict = json.loads((Path(__file__).parent / "data" / "gz2_tree.json").read_text(encoding="utf-8"))
#: Gating answer id of each question per the reference ("t01.a02" -> "a02"); None for t01 and t06.
REFERENCE_GATES: list[str | None] = [
    (q["gating_answer_for_unconditional_prob"] or ".").split(".")[1] or None for q in REFERENCE["questions"]
]


@pytest.fixture(name="reference")
def fixture_reference() -> dict:
    return REFERENCE


def test_tree_has_11_questions_and_37_answers() -> None:
    assert len(gz2.QUESTIONS) == 11
    assert len(gz2.ANSWERS) == 37
    assert len(set(gz2.ANSWER_COLUMNS)) == 37
    assert len(gz2.hart16_columns()) == 9 + 37 * 6


def test_answer_ids_skip_a35_and_place_a38_in_t08() -> None:
    ids = [a.answer_id for a in gz2.ANSWERS]
    assert "a35" not in ids
    assert ids.index("a38") == ids.index("a24") + 1
    assert gz2.ANSWERS[ids.index("a38")].task == "t08"


def test_questions_and_answers_match_reference(reference: dict) -> None:
    assert reference["n_tasks"] == len(gz2.QUESTIONS)
    assert reference["n_answers"] == len(gz2.ANSWERS)
    expected_tasks = [q["task"] for q in reference["questions"]]
    assert [q.task for q in gz2.QUESTIONS] == expected_tasks
    for question, ref in zip(gz2.QUESTIONS, reference["questions"], strict=True):
        assert question.prefix == ref["hart16_prefix"]
        assert [a.answer_id for a in question.answers] == [a["answer_id"] for a in ref["answers"]]


def test_column_names_follow_reference_order(reference: dict) -> None:
    ref_answers = [(q["task"], a) for q in reference["questions"] for a in q["answers"]]
    assert list(gz2.ANSWER_COLUMNS) == [f"gz2_p_{task}_{a['answer_id']}" for task, a in ref_answers]
    assert [a.stem for a in gz2.ANSWERS] == [a["column_base"] for _, a in ref_answers]
    hart16 = [c for _, a in ref_answers for c in a["hart16_columns_all"]]
    assert gz2.hart16_columns() == reference["hart16_file"]["leading_columns"] + hart16
    assert len(gz2.hart16_columns()) == reference["hart16_file"]["expected_total_columns"]


def test_gates_match_reference(reference: dict) -> None:
    for question, ref in zip(gz2.QUESTIONS, reference["questions"], strict=True):
        gate = ref["gating_answer_for_unconditional_prob"]
        if question.task == "t06":  # asked unless the classification ended at "star or artifact"
            assert question.parent is None
            assert question.asked_unless == "a03"
        elif gate is None:
            assert question.parent is None
        else:
            assert question.parent == gate.split(".")[1]
    assert [q.parent for q in gz2.QUESTIONS if q.task != "t06"] == [
        g for q, g in zip(REFERENCE["questions"], REFERENCE_GATES, strict=True) if q["task"] != "t06"
    ]


def test_answer_index_and_columns() -> None:
    assert gz2.answer_index("a01") == 0
    assert gz2.answer_index("a38") == 24
    assert gz2.answer_index("a37") == 36
    assert gz2.hart16_column(gz2.ANSWERS[0], "debiased") == "t01_smooth_or_features_a01_smooth_debiased"
    with pytest.raises(KeyError, match="unknown GZ2 answer id 'a35'"):
        gz2.answer_index("a35")
    with pytest.raises(KeyError, match="unknown Hart\\+16 suffix 'votes'"):
        gz2.hart16_column(gz2.ANSWERS[0], "votes")


def test_unconditional_worked_example() -> None:
    cond = np.zeros(37)
    for question in gz2.QUESTIONS:  # uniform answers everywhere
        for answer in question.answers:
            cond[gz2.answer_index(answer.answer_id)] = 1 / len(question.answers)
    out = gz2.unconditional_probabilities(cond)
    p = {a.answer_id: out[i] for i, a in enumerate(gz2.ANSWERS)}
    assert p["a01"] == pytest.approx(1 / 3)
    assert p["a04"] == pytest.approx(1 / 3 * 1 / 2)  # features * edge-on
    assert p["a06"] == pytest.approx(1 / 3 * 1 / 2 * 1 / 2)  # features * not edge-on * bar
    assert p["a28"] == pytest.approx(1 / 3 * 1 / 2 * 1 / 2 * 1 / 3)  # ... * spiral * tight
    assert p["a14"] == pytest.approx((1 - 1 / 3) * 1 / 2)  # odd: asked unless star/artifact
    assert p["a19"] == pytest.approx((1 - 1 / 3) * 1 / 2 * 1 / 7)


def test_unconditional_reads_nan_as_zero_and_checks_shape() -> None:
    cond = np.full(37, np.nan)
    cond[:3] = [1.0, 0.0, 0.0]
    out = gz2.unconditional_probabilities(cond)
    assert out[0] == 1.0
    assert np.all(np.isfinite(out))
    with pytest.raises(ValueError, match="expected 37 answers in the last axis, got shape \\(2, 36\\)"):
        gz2.unconditional_probabilities(np.zeros((2, 36)))


def _probability_vectors(n: int) -> st.SearchStrategy[np.ndarray]:
    weights = arrays(np.float64, n, elements=st.floats(0.0, 1.0, allow_subnormal=False))
    return weights.filter(lambda w: w.sum() > 1e-3).map(lambda w: w / w.sum())


conditional_inputs = st.tuples(*(_probability_vectors(len(q.answers)) for q in gz2.QUESTIONS)).map(
    np.concatenate
)


def _gate(unconditional: np.ndarray, task: str, gate_answer: str | None) -> float:
    """Probability that a question is asked, from the reference table's gates (not from gz2.py)."""
    if task == "t06":  # reference: p(asked) = 1 - p(a03), recommended for Hart+16 targets
        return 1.0 - unconditional[gz2.answer_index("a03")]
    if gate_answer is None:
        return 1.0
    return unconditional[gz2.answer_index(gate_answer)]


@settings(max_examples=200, deadline=None)
@given(cond=conditional_inputs)
def test_answers_sum_to_the_probability_the_question_was_asked(cond: np.ndarray) -> None:
    out = gz2.unconditional_probabilities(cond)
    assert out.shape == (37,)
    assert np.all(out >= 0)
    assert np.all(out <= 1 + 1e-12)
    for ref_question, gate_answer in zip(REFERENCE["questions"], REFERENCE_GATES, strict=True):
        idx = [gz2.answer_index(a["answer_id"]) for a in ref_question["answers"]]
        gate = _gate(out, ref_question["task"], gate_answer)
        assert out[idx].sum() == pytest.approx(gate, abs=1e-12)
        # each answer is its conditional fraction times the gate
        np.testing.assert_allclose(out[idx], cond[idx] * gate, atol=1e-12)
    # the root question is always asked, so its answers sum to 1
    assert out[:3].sum() == pytest.approx(1.0)


@given(batch=st.lists(conditional_inputs, min_size=1, max_size=4).map(np.stack))
@settings(max_examples=50, deadline=None)
def test_batches_are_converted_row_by_row(batch: np.ndarray) -> None:
    out = gz2.unconditional_probabilities(batch)
    assert out.shape == batch.shape
    for row_in, row_out in zip(batch, out, strict=True):
        np.testing.assert_array_equal(gz2.unconditional_probabilities(row_in), row_out)
