"""Every import path the documentation gives works: users copy them.

The paths are read from the docs themselves (``from tandem... import ...``
lines in code, and dotted names such as ``tandem.pool.PoolTimeout`` in
backticks), so a page that names a path the code no longer has fails here.
"""

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

FROM_IMPORT = re.compile(r"^\s*from (tandem(?:\.\w+)*) import ([\w, ]+?)\s*(?:#.*)?$", re.MULTILINE)
DOTTED = re.compile(r"`(tandem(?:\.\w+)+)(?:\(\))?`")
CHECK_ID = re.compile(r"tandem\.[EW]\d{3}")
# Not Python paths: logger names, and the settings' ENGINE values are checked as modules.
NOT_PATHS = {"tandem.blocking", "tandem.db.backends.mysql", "tandem.db.backends.postgresql"}


def _documented_imports() -> list[tuple[str, str]]:
    found = set()
    for page in PAGES:
        for module, names in FROM_IMPORT.findall(page.read_text()):
            found.update((module, name.strip()) for name in names.split(",") if name.strip())
    return sorted(found)


def _documented_names() -> list[str]:
    names = {name for page in PAGES for name in DOTTED.findall(page.read_text())} - NOT_PATHS
    return sorted(name for name in names if not CHECK_ID.fullmatch(name))


def _resolve(dotted: str):
    """Import the longest module prefix of ``dotted``, then get the rest as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return obj
    raise ModuleNotFoundError(dotted)


def test_the_docs_name_import_paths():
    # The test below must have something to check: the docs are where they were.
    assert len(_documented_imports()) > 20 and len(_documented_names()) > 40


@pytest.mark.parametrize(("module", "name"), _documented_imports())
def test_documented_from_import_works(module, name):
    assert hasattr(importlib.import_module(module), name), f"from {module} import {name}"


@pytest.mark.parametrize("dotted", _documented_names())
def test_documented_dotted_name_resolves(dotted):
    assert _resolve(dotted) is not None


@pytest.mark.parametrize("engine", ["postgresql", "sqlite3", "mysql"])
def test_engine_modules_import(engine):
    assert importlib.import_module(f"tandem.db.backends.{engine}.base").DatabaseWrapper


PUBLIC_MODULES = [
    *("tandem", "tandem.forms", "tandem.models", "tandem.shortcuts", "tandem.transaction", "tandem.pool"),
    *("tandem.cache", "tandem.mail", "tandem.template.loader", "tandem.handlers", "tandem.bridge"),
]


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_public_modules_declare_what_they_export(module):
    imported = importlib.import_module(module)
    exported = getattr(imported, "__all__", None)
    if exported is None:  # a namespace of subpackages (tandem.cache): its modules declare theirs
        return
    for name in exported:
        assert getattr(imported, name) is not None, f"{module}.__all__ names {name}, which is missing"
