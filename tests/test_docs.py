"""The documentation's promises that can be checked without building it (``.ci/run`` builds it with -W).

- "The paper in code" (docs/paper_in_code.md) names only functions, classes and constants that exist;
- it has a table row for every requirement of the list it copies, and that list is the whole SPEC list;
- every configuration field has a description (the configuration reference prints them).
"""

from __future__ import annotations

import importlib
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from morphomass.config import PipelineConfig

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAPER_IN_CODE = DOCS / "paper_in_code.md"

#: Every requirement ID of the project's SPEC list (paper and extensions B1-B6).
SPEC_IDS = (
    [f"D{i}" for i in range(1, 10)]
    + [f"I{i}" for i in range(1, 5)]
    + [f"N{i}" for i in range(1, 8)]
    + [f"F{i}" for i in range(1, 5)]
    + ["G1", "G2"]
    + [f"M{i}" for i in range(1, 6)]
    + [f"E{i}" for i in range(1, 12)]
    + [f"Fig. {i}" for i in (1, 2, 4, 5, 6, 7, 8)]
    + [f"B{i}" for i in range(1, 7)]
)
_ID = r"(?:[A-Z]\d+|Fig\. \d+)"
_LIST_ITEM = re.compile(rf"^- \*\*(?P<id>{_ID})\*\* ", re.MULTILINE)
_TABLE_ROW = re.compile(rf"^\| (?P<id>{_ID}) \|(?P<rest>.*)$", re.MULTILINE)
_NAME = re.compile(r"`(morphomass(?:\.\w+)+)`")


def _page() -> str:
    return PAPER_IN_CODE.read_text(encoding="utf-8")


def resolve(name: str) -> Any:
    """Import the longest importable module prefix of ``name`` and get the rest as attributes.

    Raises
    ------
    ImportError, AttributeError
        When no prefix is a module, or an attribute is missing.
    """
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    msg = f"no module in {name!r}"
    raise ImportError(msg)


def test_resolve_finds_attributes_and_refuses_missing_names() -> None:
    from morphomass.preprocess.scaling import log_scale

    assert resolve("morphomass.preprocess.scaling.log_scale") is log_scale
    assert resolve("morphomass.predict.bundle.Bundle.predict") is not None
    with pytest.raises(AttributeError):
        resolve("morphomass.preprocess.scaling.no_such_function")
    with pytest.raises(ImportError):
        resolve("morphomassx.anything")


def test_every_name_on_the_paper_in_code_page_exists() -> None:
    names = sorted(set(_NAME.findall(_page())))
    assert len(names) > 100, f"expected the page to name the implementing functions, found {len(names)}"
    missing = []
    for name in names:
        try:
            resolve(name)
        except (ImportError, AttributeError) as err:
            missing.append(f"{name} ({type(err).__name__}: {err})")
    assert not missing, "docs/paper_in_code.md names what the package lacks:\n" + "\n".join(missing)


def test_the_copied_requirement_list_is_the_whole_spec_list() -> None:
    listed = _LIST_ITEM.findall(_page())
    assert listed == SPEC_IDS


def test_every_requirement_has_a_table_row() -> None:
    page = _page()
    rows = {m["id"]: m["rest"] for m in _TABLE_ROW.finditer(page)}
    listed = _LIST_ITEM.findall(page)
    assert [i for i in listed if i not in rows] == []
    # a row names the functions that implement it, or says which issue will
    unimplemented = [i for i, rest in rows.items() if not _NAME.search(rest) and "issue" not in rest]
    assert unimplemented == []


def _sections() -> list[tuple[str, type[BaseModel]]]:
    """Every configuration section, and every model nested in one (``cnn.nets.<name>``)."""

    def nested(annotation: Any) -> type[BaseModel] | None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        for arg in typing.get_args(annotation):
            found = nested(arg)
            if found is not None:
                return found
        return None

    sections = []
    for name, info in PipelineConfig.model_fields.items():
        model = nested(info.annotation)
        if model is None:
            continue
        sections.append((name, model))
        for sub_name, sub_info in model.model_fields.items():
            sub_model = nested(sub_info.annotation)
            if sub_model is not None:
                sections.append((f"{name}.{sub_name}.<name>", sub_model))
    return sections


def test_the_configuration_has_sections_and_nested_models() -> None:
    names = [name for name, _ in _sections()]
    assert {"cosmology", "mock", "fetch", "catalog", "preprocess", "cnn", "gbm", "evaluate"} <= set(names)
    assert "cnn.nets.<name>" in names


def test_every_configuration_field_has_a_description() -> None:
    lacking = [
        f"{section}.{field}"
        for section, model in _sections()
        for field, info in model.model_fields.items()
        if not (info.description or "").strip()
    ]
    assert lacking == []
