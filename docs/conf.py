"""Sphinx configuration of the morphomass documentation (built offline: no intersphinx, no downloads).

Build: ``.venv/bin/sphinx-build -W --keep-going -b html docs docs/_build/html`` (``.ci/run`` does it after the
tests). The API pages (``docs/api/``) are generated at each build from every module's ``__all__`` by
``docs/_ext/apipages.py``; the configuration reference by ``docs/_ext/configref.py`` from the pydantic models;
the CLI reference by sphinx-click from the click group.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

import morphomass

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

project = "morphomass"
author = "morphomass developers"
copyright = "morphomass developers"  # noqa: A001 (Sphinx's name)
release = morphomass.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_click",
    "apipages",
    "configref",
    "stagetable",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "scripts", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

# MyST: heading anchors for links such as [the lock](pipeline.md#the-lock); $...$ maths.
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3

# autodoc / autosummary: apipages writes the pages (one per module); autosummary only renders their tables.
autosummary_generate = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "separated"
# pydantic machinery, not the package's API (the configuration fields are in configuration.md)
autodoc_default_options = {"exclude-members": "model_config,model_fields,model_computed_fields"}

# numpydoc: the docstrings are numpydoc (ruff's D rules, convention "numpy"). The class member tables that
# numpydoc would add duplicate what ``autoclass :members:`` documents, so they are off.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

html_theme = "alabaster"
html_title = f"morphomass {release}"
html_static_path = ["_static"]
html_css_files = ["morphomass.css"]
html_theme_options = {"description": "Galaxy M/L from images and morphology", "page_width": "1180px"}


def _plain_click_text(app: object, ctx: object, lines: list[str]) -> None:
    """Render the commands' help as the terminal shows it: plain text, not reStructuredText.

    click help is written for ``--help`` (``results/figures/*.png``), so characters that start inline markup
    are escaped rather than read as emphasis or substitutions.
    """
    for i, line in enumerate(lines):
        for char in ("\\", "*", "`", "|"):
            line = line.replace(char, "\\" + char)
        lines[i] = line


#: ``|x|`` where reStructuredText would see a substitution reference: bars hugging non-blank text.
_BARS = re.compile(r"(?<![\\\w|])\|(?=\S)([^|`]*?\S)\|(?![\w|])")
#: Inline literals and interpreted text (roles), where a bar is already literal.
_LITERAL = re.compile(r"(``.+?``|:[\w:+-]+:`[^`]+`|`[^`]+`_?)")


def _escape_line(line: str) -> str:
    parts = _LITERAL.split(line)
    return "".join(part if i % 2 else _BARS.sub(r"\\|\1\\|", part) for i, part in enumerate(parts))


def escape_absolute_values(lines: list[str]) -> None:
    """Make ``|x|`` in a docstring read as the absolute value its author wrote, in place.

    morphomass defines no reStructuredText substitutions, and its docstrings write absolute values as
    ``|pred - true|``; docutils would read those as references to undefined substitutions. Bars inside inline
    literals, roles, indented blocks after a line ending in ``::`` (literal blocks, math and code directives)
    and doctest lines are left alone. Nothing else changes.
    """
    block_indent: int | None = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if block_indent is not None:
            if not stripped or indent > block_indent:
                continue
            block_indent = None
        if "|" in line and not stripped.startswith(">>>"):
            lines[i] = _escape_line(line)
        if stripped.endswith("::"):
            block_indent = indent


def _process_docstring(
    app: object, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    """Escape absolute values; drop a constant's docstring when it is only its type's (``tuple``'s, say).

    A module constant without a ``#:`` comment would otherwise be described by the docstring of its type
    ("Built-in immutable sequence."), which says nothing about the constant.
    """
    if what in ("data", "attribute") and not inspect.isclass(obj):
        type_doc = inspect.getdoc(type(obj))
        if type_doc and "\n".join(lines).strip() == type_doc.strip():
            lines.clear()
    escape_absolute_values(lines)


def setup(app: object) -> None:
    """Connect the local handlers."""
    app.connect("sphinx-click-process-description", _plain_click_text)
    app.connect("autodoc-process-docstring", _process_docstring, priority=400)  # before numpydoc rewrites
