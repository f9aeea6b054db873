"""Exceptions and warnings raised by morphomass.

Every error a user can provoke derives from :class:`MorphomassError`; the CLI turns it into one line on stderr and a
non-zero exit status. Messages name the file, row, field or parameter, what was expected and what was found.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InputDataError",
    "MorphomassError",
    "MorphomassWarning",
    "StageNotBuiltError",
    "WorkdirError",
]


class MorphomassError(Exception):
    """Base class of every error raised on purpose by morphomass."""


class InputDataError(MorphomassError, ValueError):
    """A data file, table row or field does not have the expected form."""


class ConfigError(MorphomassError, ValueError):
    """A configuration value or configuration file is invalid."""


class WorkdirError(MorphomassError):
    """The work directory is missing a declared input or is otherwise unusable."""


class StageNotBuiltError(MorphomassError, NotImplementedError):
    """A pipeline stage named in the design is not implemented in this version."""


class MorphomassWarning(UserWarning):
    """Base class of the warnings morphomass emits."""
