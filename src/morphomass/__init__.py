"""morphomass: stellar mass-to-light ratios from galaxy images and morphology (Dobbels et al. 2019).

``morphomass.load_bundle(path).predict(images, catalog)`` applies a trained model bundle to new galaxies
(imported on first use, so ``import morphomass`` stays light).
"""

from __future__ import annotations

from importlib.metadata import version as _v
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from morphomass.predict import load_bundle

__version__ = _v("morphomass")
__all__ = ["__version__", "load_bundle"]


def __getattr__(name: str) -> Any:
    if name == "load_bundle":
        from morphomass.predict import load_bundle

        return load_bundle
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
