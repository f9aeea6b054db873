"""The CNN stage (SPEC N1-N7, F4): the four networks, GZ2 training, CNN4 on M/L, feature extraction.

``run_train_cnn`` and ``run_extract`` are imported on first use, so that importing :mod:`morphomass.cnn` (for
:mod:`morphomass.cnn.columns`, say) does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from morphomass.cnn.stage import run_extract, run_train_cnn

__all__ = ["run_extract", "run_train_cnn"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from morphomass.cnn import stage

        return getattr(stage, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
