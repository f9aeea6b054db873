"""The GZ2 normalisation layer (SPEC N1): tree constraints, agreement with gz2.py, safety and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from morphomass.cnn.normalisation import GZ2Normalisation, normalise_gz2
from morphomass.gz2 import QUESTIONS, answer_index, unconditional_probabilities


def _blocks() -> list[list[int]]:
    return [[answer_index(a.answer_id) for a in q.answers] for q in QUESTIONS]


def _gate(out: np.ndarray, question) -> np.ndarray:
    if question.parent is not None:
        return out[..., answer_index(question.parent)]
    if question.asked_unless is not None:
        return 1.0 - out[..., answer_index(question.asked_unless)]
    return np.ones(out.shape[:-1])


raw_batches = arrays(np.float64, (4, 37), elements=st.floats(-3, 3, allow_nan=False, allow_subnormal=False))


@settings(max_examples=60, deadline=None)
@given(raw=raw_batches)
def test_outputs_obey_the_tree(raw: np.ndarray) -> None:
    out = normalise_gz2(torch.from_numpy(raw)).numpy()
    assert np.all(out >= 0) and np.all(out <= 1 + 1e-12)
    for question, idx in zip(QUESTIONS, _blocks(), strict=True):
        gate = _gate(out, question)
        np.testing.assert_allclose(out[:, idx].sum(axis=1), gate, atol=1e-12)
        assert np.all(out[:, idx] <= gate[:, None] + 1e-12)


@settings(max_examples=60, deadline=None)
@given(raw=raw_batches)
def test_matches_gz2_unconditional_probabilities(raw: np.ndarray) -> None:
    """The layer's tree walk is the one that made the targets (gz2.unconditional_probabilities)."""
    rectified = np.maximum(raw, 0)
    conditional = np.empty_like(raw)
    for idx in _blocks():
        total = rectified[:, idx].sum(axis=1, keepdims=True)
        safe_total = np.where(total > 0, total, 1)
        conditional[:, idx] = np.where(total > 0, rectified[:, idx] / safe_total, 1 / len(idx))
    expected = unconditional_probabilities(conditional)
    np.testing.assert_allclose(normalise_gz2(torch.from_numpy(raw)).numpy(), expected, atol=1e-12)


def test_dead_question_is_uniform_and_finite() -> None:
    raw = torch.rand(3, 37, dtype=torch.float64) + 0.1
    t01 = [answer_index(a) for a in ("a01", "a02", "a03")]
    raw[:, t01] = -1.0  # every answer of the root question rectified to zero
    raw[0] = 0.0  # and one galaxy with all 37 outputs exactly zero
    out = normalise_gz2(raw)
    assert torch.isfinite(out).all()
    np.testing.assert_allclose(out[:, t01].numpy(), 1 / 3, atol=1e-15)


def test_dead_answer_stays_exactly_zero() -> None:
    """A rectified-to-zero answer gives an exact 0: a dead neuron shows up as an all-zero column."""
    raw = torch.rand(5, 37) + 0.1
    raw[:, answer_index("a19")] = -2.0
    assert (normalise_gz2(raw)[:, answer_index("a19")] == 0).all()


def test_gradcheck() -> None:
    raw = torch.randn(3, 37, dtype=torch.float64)
    raw = torch.where(raw.abs() < 1e-3, raw + 0.01, raw).requires_grad_()  # away from the ReLU kink
    assert torch.autograd.gradcheck(normalise_gz2, (raw,), eps=1e-6, atol=1e-6)


def test_gradient_flows_through_the_gate() -> None:
    """An edge-on answer depends on the root's features/disk output through its gate (not a constant)."""
    raw = torch.rand(1, 37, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        raw += 0.1
    out = GZ2Normalisation()(raw)
    out[0, answer_index("a04")].backward()
    assert raw.grad[0, answer_index("a02")] > 0
    assert raw.grad[0, answer_index("a01")] < 0


def test_rejects_wrong_width() -> None:
    with pytest.raises(ValueError, match="expected 37 raw GZ2 outputs"):
        normalise_gz2(torch.zeros(2, 36))
