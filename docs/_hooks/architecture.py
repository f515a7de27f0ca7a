"""MkDocs hook: the layers diagram of docs/concepts/architecture.md, drawn from the code.

The page holds the marker ``<!-- layers: generated -->``; at every build
this hook puts there the table ``tools/architecture.py diagram`` prints:
the layers of pyproject.toml's import contract and the imports the code
really has. The page cannot go stale.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

MARKER = "<!-- layers: generated -->"
_TOOL = Path(__file__).resolve().parents[2] / "tools" / "architecture.py"


def _architecture():
    spec = importlib.util.spec_from_file_location("tandem_architecture", _TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_page_markdown(markdown: str, page, **kwargs) -> str:
    """Replace the marker with the generated diagram."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, _architecture().diagram())
