"""The GZ2 probability normalisation layer (SPEC N1), driven by the tree of :mod:`morphomass.gz2`.

A network's last dense layer gives 37 raw values per galaxy. The layer turns them into unconditional answer
probabilities that always obey the Galaxy Zoo 2 tree:

1. rectify every value (ReLU), so that an answer can be exactly zero;
2. divide each answer by the sum of its question's rectified values (the conditional probability
   p(answer | question asked)); a question whose values are all zero gets the uniform distribution, so the
   division never produces NaN and the outputs still sum to one;
3. walk the questions in tree order and multiply each question's answers by the probability that the question
   was asked: the already scaled (unconditional) probability of its gating answer (``1 - p(a03)`` for t06).

This is Dieleman et al. (2015)'s divisive normalisation (reference/dieleman_normalization.md) with the gates
of :mod:`morphomass.gz2`, so the outputs live in the same space as the targets that
:func:`morphomass.gz2.unconditional_probabilities` makes from the vote fractions. Every step is differentiable
(gradients flow through the gates too).
"""

from __future__ import annotations

import torch
from torch import nn

from morphomass.gz2 import ANSWERS, QUESTIONS, answer_index

__all__ = ["GZ2Normalisation", "normalise_gz2"]

N_ANSWERS = len(ANSWERS)


def _tree_plan() -> list[tuple[slice, int | None, bool]]:
    """Per question in tree order: output slice, index of the gating answer, whether the gate is ``1 - p``.

    Raises
    ------
    ValueError
        If :data:`morphomass.gz2.QUESTIONS` lists a question before its gating answer or a question's answers
        are not contiguous in :data:`morphomass.gz2.ANSWERS` (the layer relies on both).
    """
    plan: list[tuple[slice, int | None, bool]] = []
    start = 0
    for question in QUESTIONS:
        idx = [answer_index(a.answer_id) for a in question.answers]
        if idx != list(range(start, start + len(idx))):
            msg = f"answers of GZ2 question {question.task} are not contiguous in gz2.ANSWERS: {idx}"
            raise ValueError(msg)
        gate_id = question.parent if question.parent is not None else question.asked_unless
        gate = None if gate_id is None else answer_index(gate_id)
        if gate is not None and gate >= start:
            msg = f"GZ2 question {question.task} is gated by {gate_id}, which comes after it in tree order"
            raise ValueError(msg)
        plan.append((slice(start, start + len(idx)), gate, question.asked_unless is not None))
        start += len(idx)
    return plan


_PLAN = _tree_plan()


def normalise_gz2(raw: torch.Tensor) -> torch.Tensor:
    """Map raw network outputs to unconditional GZ2 answer probabilities that obey the tree.

    Parameters
    ----------
    raw : torch.Tensor, shape (..., 37), floating
        Raw outputs in :data:`morphomass.gz2.ANSWERS` order (any real values; negatives count as zero).

    Returns
    -------
    torch.Tensor, shape (..., 37), same dtype
        Probabilities in [0, 1]. The answers of a question sum to the probability that it was asked (1 for
        task 01; the unconditional probability of the gating answer, or ``1 - p(a03)`` for task 06), and no
        answer exceeds its gate. A question whose raw outputs are all <= 0 is split uniformly.

    Raises
    ------
    ValueError
        If the last axis does not have 37 entries.
    """
    if raw.shape[-1] != N_ANSWERS:
        msg = f"expected {N_ANSWERS} raw GZ2 outputs in the last axis, got shape {tuple(raw.shape)}"
        raise ValueError(msg)
    rectified = torch.relu(raw)
    outputs: list[torch.Tensor] = []
    for block, gate, complement in _PLAN:
        values = rectified[..., block]
        total = values.sum(dim=-1, keepdim=True)
        empty = total <= 0
        uniform = torch.full_like(values, 1.0 / values.shape[-1])
        conditional = torch.where(empty, uniform, values / torch.where(empty, torch.ones_like(total), total))
        if gate is not None:
            # the outputs so far are the preceding questions: the gate's column is already unconditional
            gate_p = torch.cat(outputs, dim=-1)[..., gate : gate + 1]
            conditional = conditional * ((1.0 - gate_p) if complement else gate_p)
        outputs.append(conditional)
    return torch.cat(outputs, dim=-1)


class GZ2Normalisation(nn.Module):
    """Layer form of :func:`normalise_gz2` (no parameters): (..., 37) raw values -> probabilities."""

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        """Normalise ``raw`` (..., 37) into unconditional GZ2 probabilities; see :func:`normalise_gz2`."""
        return normalise_gz2(raw)
