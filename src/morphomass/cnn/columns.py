"""Column names of ``features/cnn.parquet`` (DESIGN §2); importing this module does not import torch.

``objid``, then per GZ2 network ``<net>_p_<task>_<answer>`` (37 columns, :data:`morphomass.gz2.ANSWERS`
order), the trunk features of the network CNN4 is built from ``cnn1_trunk_0000`` ... (2048 for ResNet50), and
the CNN4 next-to-last features ``cnn4_f00`` ... ``cnn4_f36``. Columns that are zero for every training galaxy
are dropped.
"""

from __future__ import annotations

from morphomass.gz2 import ANSWERS

__all__ = ["CNN4", "CNN4_BASE", "cnn4_columns", "network_columns", "probability_columns", "trunk_columns"]

#: Name of the network trained on M/L.
CNN4 = "cnn4"
#: The GZ2 network whose trained weights start CNN4 and whose trunk features are extracted.
CNN4_BASE = "cnn1"


def probability_columns(net: str) -> list[str]:
    """``<net>_p_<task>_<answer>`` for the 37 GZ2 answers, e.g. ``cnn2_p_t01_a01``."""
    return [f"{net}_p_{a.task}_{a.answer_id}" for a in ANSWERS]


def trunk_columns(net: str, n_features: int) -> list[str]:
    """``<net>_trunk_0000`` ... for the ``n_features`` globally pooled trunk features."""
    return [f"{net}_trunk_{i:04d}" for i in range(n_features)]


def cnn4_columns(n_features: int = len(ANSWERS)) -> list[str]:
    """``cnn4_f00`` ... ``cnn4_f36``: CNN4's next-to-last (dense-37) features."""
    return [f"{CNN4}_f{i:02d}" for i in range(n_features)]


def network_columns(
    name: str, *, kind: str, trunk_features: int, ml_features: int = len(ANSWERS)
) -> dict[str, list[str]]:
    """Map each output key of a network's ``forward_features`` to its feature columns (SPEC F4).

    Parameters
    ----------
    name : str
        The network (``"cnn1"`` ...).
    kind : {'gz2', 'ml'}
        A GZ2 network (probabilities, plus the trunk for :data:`CNN4_BASE`) or CNN4 (key ``"f"``).
    trunk_features : int
        Width of the pooled trunk (used for :data:`CNN4_BASE` only).
    ml_features : int
        Width of CNN4's next-to-last layer.
    """
    if kind == "ml":
        return {"f": cnn4_columns(ml_features)}
    columns = {"p": probability_columns(name)}
    if name == CNN4_BASE:
        columns["trunk"] = trunk_columns(name, trunk_features)
    return columns
