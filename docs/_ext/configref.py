"""Sphinx extension: the configuration reference, generated from the pydantic models of ``morphomass.config``.

The directive ``morphomass-config`` (no arguments) writes one section per configuration section of
:class:`~morphomass.config.PipelineConfig` (``[cosmology]``, ``[mock]``, ...), and one for each model nested
in a section (``[cnn.nets.<name>]``), each with a table of every field: name, type and bounds, default (the
``paper`` preset, which the class defaults are) with the ``quick`` and ``tiny`` values where they differ,
whether it is a runtime field (left out of the stage's configuration hash), and its description. Nothing is
hand-copied, so the page cannot drift from the code.
"""

from __future__ import annotations

import functools
import json
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annotated_types
from docutils import nodes
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from stagetable import python_xref

from morphomass.config import PRESETS, PipelineConfig, load_config, runtime_fields

_BOUNDS = (
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Ge, "ge", "≥"),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.Le, "le", "≤"),
    (annotated_types.MinLen, "min_length", "length ≥"),
    (annotated_types.MaxLen, "max_length", "length ≤"),
)


@dataclass(frozen=True)
class Section:
    """One table of the reference: a dotted path (``cnn.nets.<name>``) and its model class."""

    path: str
    model: type[BaseModel]


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """Return the BaseModel class inside ``annotation`` (``dict[str, NetConfig]`` -> NetConfig), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def config_sections() -> list[Section]:
    """Every section of PipelineConfig and every model nested in one, in declaration order."""
    sections = []
    for name, info in PipelineConfig.model_fields.items():
        model = _nested_model(info.annotation)
        if model is None:
            continue
        sections.append(Section(name, model))
        for sub_name, sub_info in model.model_fields.items():
            sub_model = _nested_model(sub_info.annotation)
            if sub_model is not None:
                key = "<name>" if typing.get_origin(sub_info.annotation) is dict else ""
                sections.append(Section(".".join(p for p in (name, sub_name, key) if p), sub_model))
    return sections


def format_type(annotation: Any) -> str:
    """Readable type of a field: ``int | None``, ``'astropy' | 'paper'``, ``tuple[float, ...]``."""
    if annotation is type(None) or annotation is None:
        return "None"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return format_type(args[0])
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(format_type(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else format_type(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if isinstance(annotation, type):
        return "path" if issubclass(annotation, Path) else annotation.__name__
    return str(annotation)


def format_bounds(info: FieldInfo) -> str:
    """Bounds of a field from its metadata, e.g. ``≥ 1, ≤ 1024``."""
    parts = []
    for item in info.metadata:
        for kind, attr, symbol in _BOUNDS:
            if isinstance(item, kind):
                parts.append(f"{symbol} {getattr(item, attr)}")
    return ", ".join(parts)


def format_value(value: Any) -> str:
    """Format a default as JSON-like text (tuples as lists, paths as strings), ``None`` when unset."""
    if value is None:
        return "None"
    return json.dumps(to_jsonable_python(value), ensure_ascii=False)


def _default(info: FieldInfo) -> Any:
    if info.default_factory is not None:
        return info.get_default(call_default_factory=True)
    return info.default


@functools.cache
def _preset(name: str) -> PipelineConfig:
    return load_config(name)


def _values(path: str, field: str) -> dict[str, Any]:
    """Value of ``path.field`` in every preset."""
    values = {}
    for preset in PRESETS:
        config = _preset(preset)
        parts = path.split(".")
        objects: list[Any] = [config]
        for part in parts:
            if part == "<name>":
                objects = [v for obj in objects for v in obj.values()]
            else:
                objects = [getattr(obj, part) for obj in objects]
        values[preset] = [getattr(obj, field) for obj in objects]
    return values


def _inline(text: str) -> list[nodes.Node]:
    """Text with ``literal`` and :role:`target` markup as docutils nodes (roles become literals)."""
    result: list[nodes.Node] = []
    pattern = re.compile(r"(?::[\w:]+:)?``?([^`]+)``?")
    pos = 0
    for match in pattern.finditer(text):
        if match.start() > pos:
            result.append(nodes.Text(text[pos : match.start()]))
        result.append(nodes.literal(text=match.group(1).lstrip("~")))
        pos = match.end()
    if pos < len(text):
        result.append(nodes.Text(text[pos:]))
    return result


def _entry(*children: nodes.Node) -> nodes.entry:
    entry = nodes.entry()
    entry += nodes.paragraph("", "", *children)
    return entry


def _table(section: Section) -> nodes.table:
    headers = ("field", "type", "default (paper; quick, tiny where they differ)", "runtime", "description")
    widths = (16, 16, 22, 7, 39)
    table = nodes.table(classes=["colwidths-given", "config-table"])
    group = nodes.tgroup(cols=len(headers))
    table += group
    for width in widths:
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    row = nodes.row()
    for header in headers:
        row += _entry(nodes.Text(header))
    head += row
    group += head
    body = nodes.tbody()
    runtime = set(runtime_fields(section.model))
    for name, info in section.model.model_fields.items():
        row = nodes.row()
        row += _entry(nodes.literal(text=name))
        bounds = format_bounds(info)
        type_text = format_type(info.annotation) + (f" ({bounds})" if bounds else "")
        row += _entry(nodes.literal(text=type_text))
        default = _default(info)
        if default is PydanticUndefined:
            default_nodes: list[nodes.Node] = [nodes.emphasis(text="required")]
        else:
            default_nodes = [nodes.literal(text=format_value(default))]
        if "<name>" not in section.path and _nested_model(info.annotation) is None:
            values = _values(section.path, name)
            for preset in ("quick", "tiny"):
                if values[preset] != values["paper"]:
                    text = format_value(values[preset][0] if len(values[preset]) == 1 else values[preset])
                    default_nodes += [nodes.Text(f"; {preset}: "), nodes.literal(text=text)]
        elif _nested_model(info.annotation) is not None:
            default_nodes.append(nodes.Text(f" (see [{section.path}.{name}.<name>])"))
        row += _entry(*default_nodes)
        row += _entry(nodes.Text("yes" if name in runtime else ""))
        description = _inline(info.description) if info.description else [nodes.emphasis(text="(none yet)")]
        row += _entry(*description)
        body += row
    group += body
    return table


class ConfigReference(SphinxDirective):
    """``morphomass-config``: a section with a field table for every configuration section."""

    has_content = False
    required_arguments = 0

    def run(self) -> list[nodes.Node]:
        """Build the sections."""
        self.env.note_dependency(__file__)
        result: list[nodes.Node] = []
        for section in config_sections():
            ident = "config-" + re.sub(r"[^a-z0-9]+", "-", section.path.lower()).strip("-")
            node = nodes.section(ids=[ident], names=[ident])
            node += nodes.title(text=f"[{section.path}]")
            doc = (section.model.__doc__ or "").strip()
            if doc:
                first = doc.split("\n\n")[0].replace("\n", " ")
                node += nodes.paragraph("", "", *_inline(first))
                model = f"{section.model.__module__}.{section.model.__name__}"
                node += nodes.paragraph("", "", nodes.Text("Model: "), python_xref(model))
            node += _table(section)
            result.append(node)
        return result


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the directive."""
    app.add_directive("morphomass-config", ConfigReference)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
