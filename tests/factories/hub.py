"""An offline Hugging Face hub cache that the tests build: nothing is downloaded.

:func:`offline_hub_cache` points ``HF_HOME`` (and ``TORCH_HOME``) at empty temporary folders, sets
``HF_HUB_OFFLINE`` and makes sockets refuse to connect; :func:`put_in_cache` writes a timm model there in the
hub cache layout (``models--<org>--<name>/snapshots/<rev>/`` with timm's ``save_for_hf``, and ``refs/main``),
so that loading it by its hub name works with the hub offline.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch

#: The snapshot revision of every repository written by :func:`put_in_cache`.
REVISION = "0123456789abcdef0123456789abcdef01234567"


def offline_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make an empty hub cache under a temporary HF_HOME, offline, sockets refused; return its path."""
    from huggingface_hub import constants

    home = tmp_path / "hf"
    cache = home / "hub"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    # huggingface_hub read its environment at import: patch what it reads at call time
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return cache


def put_in_cache(cache: Path, repo_id: str, model: torch.nn.Module) -> Path:
    """Write ``model`` as hub repo ``repo_id`` in the cache layout; return its snapshot folder."""
    from timm.models import save_for_hf

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    save_for_hf(model, str(snapshot), safe_serialization=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    return snapshot
