"""How the registry's patches are applied, and what they replaced.

``install(group)`` applies every ``Patch`` of ``group`` in
``tandem.patches.registry.REGISTRY`` and remembers each original. A
replacement module keeps the original it wraps, captured when it is
imported; ``install()`` imports a replacement before it sets it, so the
captured value is always Django's own.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Callable
from typing import Any

from tandem.patches.registry import REGISTRY, Patch

__all__ = ["applies", "current", "install", "installed", "when_imported"]

# (group) -> [(target object, attribute, original)], in the order applied.
_applied: dict[str, list[tuple[Any, str, Any]]] = {}


def _skipped(patch: Patch) -> bool:
    """True if ``patch`` does not apply here: its app is not installed, or its predicate says no."""
    if patch.target.startswith("django.contrib."):
        from django.apps import apps

        if not apps.is_installed(".".join(patch.target.split(":")[0].split(".")[:3])):
            return True
    if patch.when is not None:
        module_name, _, name = patch.when.partition(":")
        return not getattr(importlib.import_module(module_name), name)()
    return False


def install(group: str) -> None:
    """Apply every patch of ``group`` (idempotent)."""
    if group in _applied:
        return
    done = _applied[group] = []
    for patch in REGISTRY:
        if patch.group != group or _skipped(patch):
            continue
        replacement = patch.resolve_replacement()
        target = patch.resolve_target()
        if patch.optional and not hasattr(target, patch.attribute):
            continue
        if patch.adds:
            if hasattr(target, patch.attribute):
                continue  # Django has its own now: leave it
            setattr(target, patch.attribute, replacement)
            done.append((target, patch.attribute, None))
            continue
        original = _lookup(target, patch.attribute)
        if patch.wraps:
            replacement = replacement(original)
        setattr(target, patch.attribute, replacement)
        done.append((target, patch.attribute, original))


def _lookup(target: Any, attribute: str) -> Any:
    # A class's own attribute, unbound (a classmethod stays a classmethod).
    if isinstance(target, type):
        for klass in target.__mro__:
            if attribute in klass.__dict__:
                return klass.__dict__[attribute]
    return getattr(target, attribute)


def applies(patch: Patch) -> bool:
    """True if ``patch`` is applied here: its app is installed, its predicate agrees, its target exists."""
    if _skipped(patch):
        return False
    return not patch.optional or hasattr(patch.resolve_target(), patch.attribute)


def current(patch: Patch) -> Any:
    """What ``patch``'s target attribute holds now (a class's own attribute, unbound)."""
    return _lookup(patch.resolve_target(), patch.attribute)


def installed() -> dict[str, list[tuple[Any, str, Any]]]:
    """What ``install()`` replaced: per group, (target, attribute, original)."""
    return _applied


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls a function right after a module has been imported."""

    def __init__(self, name: str, callback: Callable[[], None]) -> None:
        self.name = name
        self.callback = callback

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module
        callback = self.callback

        def exec_then_call(module):
            exec_module(module)
            callback()

        spec.loader.exec_module = exec_then_call  # type: ignore[method-assign]  # run callbacks once the module is loaded
        return spec


def when_imported(name: str, callback: Callable[[], None]) -> None:
    """Call ``callback()`` once module ``name`` is imported (now if it is)."""
    if name in sys.modules:
        callback()
    else:
        sys.meta_path.insert(0, _AfterImport(name, callback))
