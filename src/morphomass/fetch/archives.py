"""Downloaded catalogue files: gzip detection by magic bytes, checked decompression.

Verbatim row selection.
"""

from __future__ import annotations

import gzip
import shutil
import zlib
from pathlib import Path

import numpy as np

from morphomass.errors import InputDataError
from morphomass.fetch.http import HttpClient, check_not_html
from morphomass.workdir import atomic_write

__all__ = ["GZIP_MAGIC", "copy_selected_lines", "decompress_to", "fetch_table_file", "is_gzip"]

GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: Path) -> bool:
    """Return True when the file starts with the gzip magic bytes ``1f 8b``."""
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def decompress_to(src: Path, dest: Path, *, source: str, expected: str) -> None:
    """Write the content of ``src`` to ``dest`` atomically: gunzipped when it is gzip, copied when it is not.

    A server may send a ``.gz`` file already decompressed (``Content-Encoding: gzip`` decoded on the way), so
    the magic bytes decide, not the name.

    Raises
    ------
    InputDataError
        An HTML page, a truncated or corrupt gzip stream, or an empty file; ``dest`` is then left as it was.
    """
    check_not_html(src, source=source, expected=expected)
    try:
        with atomic_write(dest, "wb") as out:
            if is_gzip(src):
                with gzip.open(src, "rb") as fin:
                    shutil.copyfileobj(fin, out, 1 << 20)
            else:
                with open(src, "rb") as fin:
                    shutil.copyfileobj(fin, out, 1 << 20)
            if out.tell() == 0:
                msg = f"{source} is empty; expected {expected}"
                raise InputDataError(msg)
    except EOFError as err:
        msg = (
            f"{source}: truncated gzip file (the compressed stream ends before its end marker); "
            f"expected {expected}"
        )
        raise InputDataError(msg) from err
    except (gzip.BadGzipFile, zlib.error) as err:
        msg = f"{source}: corrupt gzip file ({err}); expected {expected}"
        raise InputDataError(msg) from err


def fetch_table_file(
    client: HttpClient, url: str, cache_dir: Path, name: str, *, expected: str, sha256: str | None = None
) -> Path:
    """Download a (maybe gzipped) table file into the cache and return the path of its plain-text copy.

    The download ``cache_dir/name`` is kept only if it decompresses completely, so a truncated or HTML answer
    never enters the cache; ``cache_dir/<name without .gz>`` is the checked plain text.
    """
    raw_path = cache_dir / name
    plain = cache_dir / name.removesuffix(".gz")
    if plain == raw_path:
        plain = cache_dir / f"{name}.txt"

    def validate(part: Path) -> None:
        decompress_to(part, plain, source=url, expected=expected)

    if plain.exists() and raw_path.exists():
        return plain
    plain.unlink(missing_ok=True)
    client.download(url, raw_path, validate=validate, sha256=sha256)
    if not plain.exists():  # the download was cached by an earlier run whose plain copy is gone
        try:
            decompress_to(raw_path, plain, source=url, expected=expected)
        except InputDataError:
            raw_path.unlink(missing_ok=True)  # damaged in the cache: the next run downloads it again
            raise
    return plain


def copy_selected_lines(src: Path, dest: Path, keep: np.ndarray, *, header_lines: int = 0) -> int:
    """Copy the header lines and the kept data lines of a text table verbatim, atomically; return rows kept.

    Parameters
    ----------
    src, dest : Path
    keep : (N,) bool array
        One flag per non-blank data line (the rows pandas reads), in file order.
    header_lines : int
        Lines copied unconditionally at the top.

    Raises
    ------
    InputDataError
        If ``src`` does not hold exactly N data lines.
    """
    kept = 0
    row = 0
    with open(src, encoding="utf-8", newline="") as fin, atomic_write(dest, "w") as fout:
        for number, line in enumerate(fin):
            if number < header_lines:
                fout.write(line.rstrip("\r\n") + "\n")
                continue
            if not line.strip():
                continue
            if row >= len(keep):
                msg = f"{src} has more data lines than the {len(keep)} rows read from it"
                raise InputDataError(msg)
            if keep[row]:
                fout.write(line.rstrip("\r\n") + "\n")
                kept += 1
            row += 1
        if row != len(keep):
            msg = f"{src} has {row} data lines, expected {len(keep)}"
            raise InputDataError(msg)
    return kept
