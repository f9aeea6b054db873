"""Exceptions and warnings raised by morphomass.

Every error a user can provoke derives from :class:`MorphomassError`; the CLI turns it into one line on stderr
and a non-zero exit status. Messages name the file, row, field or parameter, what was expected and what was
found.
"""

from __future__ import annotations

__all__ = [
    "BundleError",
    "BundleVersionWarning",
    "ConfigError",
    "FetchError",
    "FetchFallbackWarning",
    "GalaxyImageError",
    "InputDataError",
    "MorphomassError",
    "MorphomassWarning",
    "WorkdirError",
    "WorkdirLockedError",
]


class MorphomassError(Exception):
    """Base class of every error raised on purpose by morphomass."""


class InputDataError(MorphomassError, ValueError):
    """A data file, table row or field does not have the expected form."""


class ConfigError(MorphomassError, ValueError):
    """A configuration value or configuration file is invalid."""


class WorkdirError(MorphomassError):
    """The work directory is missing a declared input or is otherwise unusable."""


class WorkdirLockedError(WorkdirError):
    """Another morphomass process holds the work directory's lock (one writer at a time)."""


class MorphomassWarning(UserWarning):
    """Base class of the warnings morphomass emits."""


class FetchError(MorphomassError):
    """A download failed after every retry, or the server refused it (HTTP 4xx)."""


class BundleError(InputDataError):
    """A bundle is missing, tampered with, or was made by an incompatible version."""


class GalaxyImageError(InputDataError):
    """One galaxy's image cannot be preprocessed.

    Parameters
    ----------
    kind : str
        One of :data:`morphomass.preprocess.fits_image.FAILURE_KINDS` (the column of the per-galaxy failure
        report).
    message : str
        What is wrong, naming the file.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class FetchFallbackWarning(MorphomassWarning):
    """HyperLeda's SQL interface failed and the static VizieR VII/237 table was used instead."""


class BundleVersionWarning(MorphomassWarning):
    """A library of the bundle has another major.minor version here: predictions may differ a little."""
