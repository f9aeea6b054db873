"""Sphinx extension: the table of pipeline stages, generated from ``morphomass.pipeline.STAGES``.

The directive ``morphomass-stages`` writes one row per stage, in the order of ``morphomass run``
(``RUN_ORDER``) and then the others (``fetch``, ``predict``): the CLI command, the runner function (linked to
its API entry), what it reads and writes in the work directory, and the configuration sections whose hash the
manifest records for it (``morphomass.config.STAGE_CONFIG``). The table is read from the code at each build.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from morphomass.config import STAGE_CONFIG
from morphomass.pipeline import RUN_ORDER, STAGES
from morphomass.workdir import WorkDir


def python_xref(target: str, text: str | None = None) -> addnodes.pending_xref:
    """Link to the API entry of ``target`` (a fully qualified name), shown as a literal."""
    ref = addnodes.pending_xref(
        "", refdomain="py", reftype="obj", reftarget=target, refexplicit=True, refwarn=False
    )
    ref += nodes.literal(text=text or target)
    return ref


def _entry(*children: nodes.Node) -> nodes.entry:
    entry = nodes.entry()
    entry += nodes.paragraph("", "", *children)
    return entry


def _literals(items: list[str]) -> list[nodes.Node]:
    result: list[nodes.Node] = []
    for i, item in enumerate(items):
        if i:
            result.append(nodes.Text(", "))
        result.append(nodes.literal(text=item))
    return result or [nodes.Text("-")]


def _runner_target(target: str) -> tuple[str, str]:
    """``"morphomass.mock:run_mock"`` -> (where it is documented, the name users import)."""
    module, _, name = target.partition(":")
    obj = getattr(importlib.import_module(module), name)
    return f"{obj.__module__}.{name}", f"{module}.{name}"


class StageTable(SphinxDirective):
    """``morphomass-stages``: the stages of the pipeline as a table."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        """Build the table."""
        workdir = WorkDir(Path("morphomass-work"))
        order = list(RUN_ORDER) + [name for name in STAGES if name not in RUN_ORDER]
        headers = ("command", "runner", "reads", "writes", "configuration hashed")
        table = nodes.table(classes=["colwidths-given"])
        group = nodes.tgroup(cols=len(headers))
        table += group
        for width in (12, 26, 24, 24, 14):
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        row = nodes.row()
        for header in headers:
            row += _entry(nodes.Text(header))
        head += row
        group += head
        body = nodes.tbody()
        for name in order:
            stage = STAGES[name]
            documented, shown = _runner_target(stage.target)
            row = nodes.row()
            row += _entry(nodes.literal(text=f"morphomass {name}"))
            row += _entry(python_xref(documented, shown))
            row += _entry(*_literals(list(stage.input_paths(workdir))))
            row += _entry(*_literals(list(stage.output_paths(workdir))))
            needs = STAGE_CONFIG.get(name)
            sections = [] if needs is None else [f"[{s}]" for s in needs.sections] + list(needs.derived)
            row += _entry(*_literals(sections))
            body += row
        group += body
        return [table]


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the directive."""
    app.add_directive("morphomass-stages", StageTable)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
