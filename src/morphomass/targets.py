"""What the pipeline predicts: the target quantity, its kind and its names (shared by every stage).

The catalogue stage turns ``catalog.target`` into the columns ``target`` and ``target_err`` of
``sample.parquet`` and records the :class:`Target` in that file's Parquet metadata (:func:`target_metadata`);
every later stage reads it back with :func:`read_target` instead of reading the configuration, so a work
directory knows what its models predict.

Two kinds of target:

* ``"ratio"``: a positive quantity in linear units (the paper's g-band M/L, ``ml_g``). Its error is absolute,
  the dex error of a prediction is ``log10(pred / true)`` and intervals are multiplicative.
* ``"difference"``: a quantity already in logarithmic (or magnitude) units (``logmstar``, ``logsfr``, a user
  column). Its error is in those units, the dex error of a prediction is ``pred - true`` and intervals are
  additive.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from morphomass.errors import InputDataError

__all__ = [
    "BUILTIN_TARGETS",
    "ML_G",
    "PARQUET_KEY",
    "Target",
    "TargetKind",
    "read_target",
    "resolve_target",
    "target_from_json",
    "target_metadata",
]

TargetKind = Literal["ratio", "difference"]
#: Key of the target's JSON in the Parquet schema metadata of ``sample.parquet``.
PARQUET_KEY = b"morphomass.target"


@dataclass(frozen=True)
class Target:
    r"""The quantity the models predict.

    Attributes
    ----------
    name : str
        ``catalog.target``: ``"ml_g"``, ``"logmstar"``, ``"logsfr"`` or a GSWLC-2 column.
    kind : {'ratio', 'difference'}
        How errors, metrics and intervals treat it (module docstring).
    column : str
        The GSWLC-2 column (or, for ``ml_g``, the columns) it comes from, as written in the report.
    error_column : str
        Where its error comes from.
    prediction : str
        Stem of the prediction columns: ``<prediction>_pred``, ``<prediction>_lo_68``, ...
    symbol : str
        Mathtext symbol of the linear quantity that figures show on a log axis (``10**value`` for a target
        in dex): ``$M/L_g$``, ``$M_\star$``, ``SFR``.
    unit : str
        Its unit in words (``"M_sun/L_sun"``, ``"dex"``, ...).
    description : str
        One line for reports.
    """

    name: str
    kind: TargetKind
    column: str
    error_column: str
    prediction: str
    symbol: str
    unit: str
    description: str

    @property
    def in_dex(self) -> bool:
        """Whether values are already logarithmic (a difference target): dex errors are plain differences."""
        return self.kind == "difference"

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), as stored in Parquet metadata, bundles and metrics.json."""
        return json.dumps(asdict(self), sort_keys=True)


ML_G = Target(
    name="ml_g",
    kind="ratio",
    column="logmstar, flux_g",
    error_column="logmstar_err, flux_g_err",
    prediction="ml",
    symbol=r"$M/L_g$",
    unit="M_sun/L_sun",
    description="g-band stellar mass-to-light ratio (GSWLC-2 SED mass over the g-band luminosity)",
)

#: The targets ``catalog.target`` names without a GSWLC-2 column.
BUILTIN_TARGETS: dict[str, Target] = {
    "ml_g": ML_G,
    "logmstar": Target(
        name="logmstar",
        kind="difference",
        column="log_mstar",
        error_column="log_mstar_err",
        prediction="log_mstar",
        symbol=r"$M_\star$",
        unit="dex",
        description="log10 stellar mass (GSWLC-2 SED fit)",
    ),
    "logsfr": Target(
        name="logsfr",
        kind="difference",
        column="log_sfr_sed",
        error_column="log_sfr_sed_err",
        prediction="log_sfr",
        symbol="SFR",
        unit="dex",
        description="log10 star-formation rate (GSWLC-2 SED fit)",
    ),
}


def resolve_target(name: str, error_column: str | None, dtypes: Mapping[str, Any]) -> Target:
    """Return the :class:`Target` that ``catalog.target`` (and ``catalog.target_error``) name.

    Parameters
    ----------
    name : str
        ``"ml_g"``, ``"logmstar"``, ``"logsfr"``, or a real-valued column of the GSWLC-2 table.
    error_column : str or None
        For a column target: its error column (None: ``<name>_err``); must be None for a built-in target.
    dtypes : mapping of str to dtype
        The GSWLC-2 table's columns and their dtypes (``DataFrame.dtypes``), to check a column target against.

    Raises
    ------
    InputDataError
        If a column target or its error column is not a real-valued GSWLC-2 column (ids and flags are not
        targets), or an error column is given for a built-in target.
    """
    import pandas as pd

    if name in BUILTIN_TARGETS:
        if error_column is not None:
            msg = (
                f"catalog.target_error = {error_column!r} is only used with a GSWLC-2 column as the target, "
                f"got target = {name!r} (whose error is {BUILTIN_TARGETS[name].error_column})"
            )
            raise InputDataError(msg)
        return BUILTIN_TARGETS[name]
    real = [column for column, dtype in dtypes.items() if pd.api.types.is_float_dtype(dtype)]
    error = error_column or f"{name}_err"
    for field, column in (("catalog.target", name), ("catalog.target_error", error)):
        if column not in real:
            msg = (
                f"{field} = {column!r} is not a real-valued GSWLC-2 column; expected 'ml_g', 'logmstar', "
                f"'logsfr' or one of {real}"
            )
            raise InputDataError(msg)
    unit = "dex" if name.startswith("log") else "catalogue units"
    escaped = name.replace("_", r"\_")
    return Target(
        name=name,
        kind="difference",
        column=name,
        error_column=error,
        prediction=name,
        symbol=rf"$10^{{\mathrm{{{escaped}}}}}$",
        unit=unit,
        description=f"the GSWLC-2 column {name} (error {error})",
    )


def target_metadata(target: Target) -> dict[bytes, bytes]:
    """Parquet schema metadata that records ``target`` (merged into the file's metadata)."""
    return {PARQUET_KEY: target.to_json().encode()}


def target_from_json(text: str | bytes, *, source: str) -> Target:
    """Parse :meth:`Target.to_json` output.

    Raises
    ------
    InputDataError
        Naming ``source`` if the JSON is not a target.
    """
    try:
        fields = json.loads(text)
        known = {f.name for f in dataclasses.fields(Target)}
        target = Target(**{k: v for k, v in fields.items() if k in known})  # keys of older versions dropped
    except (AttributeError, TypeError, ValueError) as err:
        msg = f"{source}: the recorded target is not valid ({err})"
        raise InputDataError(msg) from None
    if target.kind not in ("ratio", "difference"):
        msg = f"{source}: target kind must be 'ratio' or 'difference', got {target.kind!r}"
        raise InputDataError(msg)
    return target


def read_target(sample_path: str | Path) -> Target:
    """Read the target that the catalogue stage recorded in ``sample.parquet``.

    A file without the record (written by hand, or by an older morphomass) holds the paper's target,
    :data:`ML_G`.

    Raises
    ------
    InputDataError
        If the recorded target is not valid.
    """
    import pyarrow.parquet as pq

    metadata = pq.read_schema(sample_path).metadata or {}
    if PARQUET_KEY not in metadata:
        return ML_G
    return target_from_json(metadata[PARQUET_KEY], source=str(sample_path))
